"""Embedding: the only place PoisonGuard trains or runs torch models.

One module per concept:

- :mod:`poisonguard.embed.pipeline`: :func:`embed_dataset`, the scan's embedding stage (train the
  model on the audited data, or use a user's TorchScript extractor; in memory or out of core),
  and its :class:`EmbedSettings`;
- :mod:`poisonguard.embed.inference`: the trained model rebuilt from its weights, chunked
  inference as tasks, and :func:`embed_with` for other samples;
- :mod:`poisonguard.embed.training`: the training recipe and per-sample training dynamics;
- :mod:`poisonguard.embed.models`, :mod:`poisonguard.embed.inputs`,
  :mod:`poisonguard.embed.text_tokens`, :mod:`poisonguard.embed.torchscript`: the
  architectures, input scaling, texts as token ids (a vocabulary built from the audited texts)
  and user extractors;
- :mod:`poisonguard.embed.cache`: results cached by fingerprint.

The machine's cores and torch thread count live in :mod:`poisonguard.machine`.
"""

from __future__ import annotations

from poisonguard.embed.cache import default_cache_dir
from poisonguard.embed.inference import embed_with
from poisonguard.embed.pipeline import EmbedSettings, embed_dataset

# poisonguard/scan.py still imports it from here; it belongs to poisonguard.machine
from poisonguard.machine import available_cores

__all__ = [
    "EmbedSettings",
    "embed_dataset",
    "embed_with",
    "default_cache_dir",
    "available_cores",
]
