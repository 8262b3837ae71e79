"""Everything before the model: the built-in dataset, video files, sources, text ids, token shards
and the grain pipelines of the curriculum stages."""
