"""Evaluation: tokenizer reconstruction metrics, FVD, the synthetic-data probe, text-to-video
faithfulness and long-video consistency, and the report they feed."""
