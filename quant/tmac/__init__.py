"""T-MAC lookup-table quantization: codes, layouts, the LUT product and the group search."""
