"""Files the stages exchange: params.yaml, feature shards, JSON, prediction tables."""
