"""Modelling side of PANTHER: tokenizer, SPRM transformer, profile embedding, fraud head. No Kafka here."""
