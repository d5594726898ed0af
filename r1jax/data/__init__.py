"""Datasets for reasoning RL.

Modules: `countdown` (TinyZero's arithmetic task as a TFDS dataset, with a resumable shuffled
iterator) and `prompts` (its prompt templates). Not imported here: `countdown` pulls in TFDS.
"""
