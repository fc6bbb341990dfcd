"""Poison generation: poisoned copies of a dataset's arrays, with the ground truth.

PoisonGuard audits data for poisoning; this package makes the poison it is measured against.
The attacks are plain functions over arrays (:mod:`.triggers`, :mod:`.table_trigger`,
:mod:`.adaptive`, :mod:`.label_flips`; for texts, object arrays of ``str``, :mod:`.text_triggers`:
rare trigger words inserted between words, BadNL's ``rare-word``, or a trigger sentence at a
sentence boundary, InsertSent's ``sentence``), registered by name in :data:`ATTACKS`, with the
variants that make a backdoor harder to separate in a model's latent space in modules of their
own (:mod:`.targets`: all-to-all and source-specific; :mod:`.cover`: cover samples;
:mod:`.combined`: several backdoors). The entry points:

* :func:`poison_arrays` poisons ``round(rate * N)`` samples of a training set and returns a
  :class:`Poisoning`: the new arrays, the masks of poisoned (payload) and cover samples and the
  parameters used (:mod:`.poisoning`);
* :func:`add_backdoor` plants another backdoor on samples an earlier poisoning left untouched
  (:mod:`.poisoning`);
* :func:`apply_trigger` stamps the same trigger on every sample of another array (the triggered
  test copy on which an attack's success rate is measured; :mod:`.backdoor`, which also chooses
  and stamps a backdoor's training samples).

Their inputs are checked in :mod:`.validation`; the result is a :class:`Poisoning`
(:mod:`.result`), the tunables an :class:`AttackOptions` (:mod:`.options`).

Randomness comes only from ``seed``, through separate streams (numbered in :mod:`.seeds`), so
that changing how many samples are poisoned never changes the trigger:

* ``np.random.default_rng([seed, 0])`` chooses the poisoned samples (and draws flipped labels);
* ``np.random.default_rng([seed, 1])`` draws the trigger pattern (blend and adaptive-blend noise,
  WaNet field, default table columns; rare-word: which word of the list each insertion puts in):
  the same seed gives the same pattern in :func:`poison_arrays` and in :func:`apply_trigger`;
* ``np.random.default_rng([seed, 2])`` draws the per-image corners of a ``"random"`` patch, and
  the per-text places of a ``"random"`` rare-word or sentence trigger;
* ``np.random.default_rng([seed, 3])`` draws the target class when none is given;
* ``np.random.default_rng([seed, 4])`` chooses the cover samples (so adding cover samples never
  changes which payload samples are drawn);
* ``np.random.default_rng([seed, 5])`` draws each adaptive-blend sample's trigger pieces
  (payload samples first, then cover samples);
* ``np.random.default_rng([seed, 6])`` draws the noise of WaNet's cover (noise-mode) samples.

Same inputs and seed give bitwise identical outputs; the inputs are never modified.
"""

from __future__ import annotations

from poisonguard.poison.backdoor import apply_trigger
from poisonguard.poison.label_flips import (
    near_boundary_flips,
    pair_flips,
    poison_count,
    random_flips,
)
from poisonguard.poison.options import IMAGE_TRIGGERS, AttackOptions
from poisonguard.poison.poisoning import add_backdoor, poison_arrays
from poisonguard.poison.registry import ATTACKS, Attack
from poisonguard.poison.result import ROLES, Poisoning
from poisonguard.poison.table_trigger import default_table_trigger, table_trigger
from poisonguard.poison.targets import NO_TARGET, trigger_targets
from poisonguard.poison.text_triggers import rare_word_trigger, sentence_trigger
from poisonguard.poison.triggers import (
    blend_trigger,
    image_value_max,
    patch_trigger,
    sig_trigger,
    wanet_trigger,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackOptions",
    "IMAGE_TRIGGERS",
    "NO_TARGET",
    "Poisoning",
    "ROLES",
    "add_backdoor",
    "apply_trigger",
    "blend_trigger",
    "default_table_trigger",
    "image_value_max",
    "near_boundary_flips",
    "pair_flips",
    "patch_trigger",
    "poison_arrays",
    "poison_count",
    "random_flips",
    "rare_word_trigger",
    "sentence_trigger",
    "sig_trigger",
    "table_trigger",
    "trigger_targets",
    "wanet_trigger",
]
