"""Everything before the model: datasets, video I/O, text tokenizer, pre-tokenization, pipelines."""
