"""Offline, deterministic text tasks: a generated corpus and five downstream tasks.

Importing `tasks.embedded.tasks` registers `embedded_pretrain_v1`, the downstream tasks and the
mixture `embedded` with seqio (`tasks.registry` does it for you).
"""
