"""Dataset generators and bundled data: synthetic ``shapes`` scenes and the NEON ``trees`` tiles."""
