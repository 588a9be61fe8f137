"""Streaming side of PANTHER: event contract, Kafka plumbing, simulator, Faust worker, Triton client."""
