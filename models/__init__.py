"""Modelling side of PANTHER: tokenizer, SPRM transformer, profile embedding, fraud head. No Kafka here.

Engineers building issue 3: the interface contract between DATA and MODEL is models/CONTRACT.md — read it first.
"""
