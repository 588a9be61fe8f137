"""Names of the fraud head's files inside a model artefact (no torch: the stream reads them too)."""

HEAD_NAME = "fraud_head"  # fraud_head.safetensors: the head's weights
TREES_NAME = "fraud_trees"  # fraud_trees.safetensors: a residual head's served trees (treelite bytes)
ENCODER_NAME = "fraud_encoder"  # fraud_encoder.safetensors: a fine-tuned encoder, when fit-fraud made one
HEAD_JSON = "fraud_head.json"  # head config, feature schema, deviation settings, temperature, weights' sha256
