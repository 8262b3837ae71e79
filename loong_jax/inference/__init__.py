"""Generation: sampling, KV-cached decoding, long videos by re-encoding (SPEC §5)."""
