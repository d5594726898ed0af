"""Datasets for reasoning RL.

Modules: `countdown` (TinyZero's arithmetic task as a TFDS dataset, with a resumable shuffled
iterator), `prompts` (the prompt templates) and `tasks` (what the trainer sees: Countdown, or math
problems read from JSONL files). Not imported here: `countdown` pulls in TFDS.
"""
