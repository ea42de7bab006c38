"""Writing a GGUF: encoding row chunks, streaming them in order, shards and split/merge."""
