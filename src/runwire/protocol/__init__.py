"""Wire protocol v1: frames, codes, validation and encoding. Pure data, no I/O."""
