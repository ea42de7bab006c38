"""YaRN settings that transformers honours and llama.cpp does not: converted with a warning
that says what llama.cpp computes, or refused where the GGUF would be a different model.

- `truncate: false` (gpt-oss's configs): transformers keeps YaRN's correction range unrounded;
  llama.cpp always floors/ceils it, and no GGUF key can say otherwise. The rope frequencies near
  the range's ends differ slightly; verify's HF reference keeps transformers' form and reports
  the cost.
- DeepSeek-V2/V3 (`deepseek2`): transformers scales cos/sin by mscale(s, mscale) /
  mscale(s, mscale_all_dim) (by mscale(s, 1) when either is missing) and the softmax by
  mscale(s, mscale_all_dim)^2 (not at all without it). llama.cpp reads only mscale_all_dim
  (its converter writes 0.1 * mscale_all_dim as yarn_log_multiplier) and assumes
  mscale == mscale_all_dim, as every released DeepSeek config has it (0.707 / 0.707 for V2,
  1.0 / 1.0 for V3). Any other pair scales attention differently: refused."""
from __future__ import annotations

import math

from tinyconvert.formats.errors import InputError


def _factor(c) -> float:
    return float(c.rope.get("factor") or 1.0)


def yarn_notes(c) -> list[str]:
    if c.rope.get("rope_type") != "yarn" or c.rope.get("truncate") is not False:
        return []
    return ["config.json's YaRN has truncate=false: transformers keeps the correction range "
            "unrounded, llama.cpp always rounds it (floor/ceil), and no GGUF key can say "
            "otherwise, so llama.cpp computes slightly different rope frequencies than "
            "transformers for this model (verify --reference-engine transformers shows the cost)"]


def check_deepseek_yarn(c) -> None:
    r = c.rope
    if r.get("rope_type") != "yarn" or _factor(c) <= 1.0:
        return
    mscale, all_dim = r.get("mscale"), r.get("mscale_all_dim")
    if mscale and all_dim and math.isclose(float(mscale), float(all_dim), rel_tol=1e-6):
        return
    raise InputError(f"config.json's YaRN has mscale={mscale} and mscale_all_dim={all_dim}; "
                     f"llama.cpp's deepseek2 reads only mscale_all_dim and assumes mscale equals "
                     f"it, so the GGUF would scale attention differently from transformers")
