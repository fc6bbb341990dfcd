"""The scan pipeline: load -> embed -> detect -> decide.

:func:`scan_path` is what ``poisonguard scan`` runs; :func:`scan_dataset` starts from a loaded
:class:`~poisonguard.dataset.Dataset`; :func:`scan_embedding` is the part after the embedding:
the detectors (:mod:`poisonguard.detectors`, which check the embedding once as it enters them),
the decision (:mod:`poisonguard.decision`) and the scan's words for it
(:mod:`poisonguard.findings`). All return a :class:`~poisonguard.results.ScanResult` for
:func:`poisonguard.report.write_report`.

Out of core (``--chunk-rows``), the scan is given a staging area
(:func:`~poisonguard.ondisk.staging_area`): the loader copies the samples there, and the
detectors' per-sample results go there through a :class:`~poisonguard.rows.RowStore`; every
per-sample array is read through :class:`~poisonguard.rows.Rows`, wherever it is.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poisonguard.dataset import Dataset, align_classes
from poisonguard.decision import (
    CommonPattern,
    DecisionSettings,
    InputVotes,
    PatternCompletion,
    Transplant,
    TrustedWords,
    Warp,
    WarpFeatures,
    decide,
)
from poisonguard.detectors import (
    PER_CLASS_DETECTORS,
    REDUCERS,
    DetectorInputs,
    TrustedSet,
    get_detectors,
)
from poisonguard.detectors.common_pattern import (
    MIN_VALUES,
    agreement,
    carrying,
    member_residuals,
    residuals,
    trimmed_refitted,
)
from poisonguard.detectors.input_neighbours import (
    KeptNorms,
    nearest_means,
    nearest_samples,
    neighbour_votes,
)
from poisonguard.detectors.streaming import out_of_sample_probabilities
from poisonguard.detectors.text_columns import word_columns
from poisonguard.detectors.transplant import (
    blend_fit,
    blended_share,
    common_stamp,
    look_alike_class,
    mean_difference,
    stamped_share,
    transplant_share,
)
from poisonguard.detectors.trigger_words import (
    TriggerWordTest,
    bag_matrix,
    foreign_group,
    foreign_reader,
    named_word_sets,
    trigger_word_test,
)
from poisonguard.detectors.warp_search import (
    SURE,
    measured_share,
    search_warp,
    warped_features,
)
from poisonguard.embed import EmbedSettings, available_cores, embed_dataset, embed_with
from poisonguard.embed.inference import (
    class_reader,
    differentiable_features,
    differentiable_logits,
    trained_model,
)
from poisonguard.embed.text_tokens import Tokenizer, tokenize
from poisonguard.findings import (
    RULE_DETECTORS,
    class_findings,
    per_class_warnings,
    rules_off,
    sample_reasons,
)
from poisonguard.ondisk import Staging
from poisonguard.results import Embedding, ScanResult
from poisonguard.rows import RowStore, Stored, as_rows, where
from poisonguard.tasks import LocalTasks, TaskRunner, task_runner

__all__ = [
    "RULE_DETECTORS",
    "ScanSettings",
    "rules_off",
    "scan_dataset",
    "scan_embedding",
    "scan_path",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSettings:
    """Everything that changes a scan's result (recorded in the report).

    Parameters
    ----------
    detectors : tuple of str or None
        Detector names; ``None`` runs every registered detector.
    seed : int
        Seeds every random choice; the same seed gives the same report.
    reduce : {"pca", "ica", "umap"}
        Reduction used by activation clustering.
    trusted : Path or None
        A small clean dataset in the same format; enables the ``trusted-influence`` detector.
    min_class_size : int
        Classes with fewer samples are not scored (a warning says so).
    epochs, batch_size, model_file
        Passed to :class:`~poisonguard.embed.EmbedSettings`.
    """

    detectors: tuple[str, ...] | None = None
    seed: int = 0
    reduce: str = "pca"
    trusted: Path | None = None
    min_class_size: int = 10
    epochs: int | None = None
    batch_size: int = 128
    model_file: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["model_file"] = None if self.model_file is None else str(self.model_file)
        values["trusted"] = None if self.trusted is None else str(self.trusted)
        chosen = get_detectors(self.detectors, trusted=self.trusted is not None)
        values["detectors"] = [d.name for d in chosen]
        values["decision"] = asdict(DecisionSettings())
        return values


def scan_path(
    path: str | Path,
    settings: ScanSettings,
    *,
    format: str | None = None,
    x_key: str | None = None,
    y_key: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    skip_bad: bool = False,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    dask: str | None = None,
    chunk_rows: int | None = None,
    staging: Staging | None = None,
) -> ScanResult:
    """Load the dataset at ``path`` and scan it (see :func:`scan_dataset`).

    With ``staging`` (out of core, see :func:`poisonguard.ondisk.staging_area`), HDF5 and
    image-folder samples are copied block by block to a staging file instead of memory; the
    result reads them from there (thumbnails), so write the report before the staging area
    ends. ``text_column`` names a text dataset's text column (default ``text``; see
    :func:`~poisonguard.loaders.load_dataset`).
    """
    # reject an unknown detector or reduction before the slow steps
    get_detectors(settings.detectors, trusted=settings.trusted is not None)
    if settings.reduce not in REDUCERS:
        raise ValueError(f"unknown reduction {settings.reduce!r}; valid: {', '.join(REDUCERS)}")
    from poisonguard.loaders import load_dataset

    options = dict(
        format=format,
        x_key=x_key,
        y_key=y_key,
        label_column=label_column,
        id_column=id_column,
        text_column=text_column,
    )
    # reach the cluster before reading the data, so that a wrong address fails fast
    with task_runner(dask, workers=available_cores()) as runner:
        start = time.perf_counter()
        dataset = load_dataset(path, skip_bad=skip_bad, staging=staging, **options)
        trusted = None
        if settings.trusted is not None:
            trusted = load_dataset(settings.trusted, **options)
        timings = {"load": time.perf_counter() - start}
        return _scan_dataset(
            dataset,
            settings,
            trusted=trusted,
            cache_dir=cache_dir,
            use_cache=use_cache,
            progress=progress,
            timings=timings,
            runner=runner,
            chunk_rows=chunk_rows,
            staging=staging,
        )


def scan_dataset(
    dataset: Dataset,
    settings: ScanSettings,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    trusted: Dataset | None = None,
    dask: str | None = None,
    chunk_rows: int | None = None,
    staging: Staging | None = None,
) -> ScanResult:
    """Embed ``dataset``, run the detectors and flag suspicious samples.

    ``trusted`` is a small clean dataset with the same classes and sample shape; it enables the
    ``trusted-influence`` detector. ``dask`` runs the embedding inference and the per-class
    detectors as tasks on a Dask cluster (``"local"`` starts one on this machine, anything else
    is a scheduler address); the scores are the same as without it (see
    :mod:`poisonguard.tasks`). ``chunk_rows`` makes the scan out of core: the features stay in
    the embedding cache file and are read ``chunk_rows`` rows, or one class, at a time (see
    :mod:`poisonguard.rows`); the scores are the same as in memory. With ``staging`` too
    (:func:`~poisonguard.ondisk.staging_area`), the per-sample results are kept in staging
    files as well (see :func:`scan_embedding`).
    """
    get_detectors(settings.detectors, trusted=trusted is not None)  # fail before training
    with task_runner(dask, workers=available_cores()) as runner:
        return _scan_dataset(
            dataset,
            settings,
            cache_dir=cache_dir,
            use_cache=use_cache,
            progress=progress,
            timings=timings,
            trusted=trusted,
            runner=runner,
            chunk_rows=chunk_rows,
            staging=staging,
        )


def _scan_dataset(
    dataset: Dataset,
    settings: ScanSettings,
    *,
    cache_dir: str | Path | None,
    use_cache: bool,
    progress: bool,
    timings: dict[str, float] | None,
    trusted: Dataset | None,
    runner: TaskRunner,
    chunk_rows: int | None = None,
    staging: Staging | None = None,
) -> ScanResult:
    timings = dict(timings or {})
    start = time.perf_counter()
    embedding = embed_dataset(
        dataset,
        EmbedSettings(
            seed=settings.seed,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            model_file=settings.model_file,
        ),
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
        runner=runner,
        chunk_rows=chunk_rows,
        staging=staging,
    )
    timings["embed"] = time.perf_counter() - start
    for stage, seconds in embedding.stage_seconds.items():
        timings[f"embed:{stage}"] = seconds
    return scan_embedding(
        dataset,
        embedding,
        settings,
        trusted=trusted,
        timings=timings,
        runner=runner,
        progress=progress,
        staging=staging,
    )


def scan_embedding(
    dataset: Dataset,
    embedding: Embedding,
    settings: ScanSettings,
    *,
    trusted: Dataset | None = None,
    timings: dict[str, float] | None = None,
    runner: TaskRunner | None = None,
    progress: bool = False,
    staging: Staging | None = None,
) -> ScanResult:
    """Run the detectors on an embedding of ``dataset`` and flag suspicious samples.

    The part of :func:`scan_dataset` after the embedding; benchmarks call it on synthetic
    embeddings. The per-class detectors run as one task per class on ``runner`` (default: in
    this process, one after another). With ``staging`` (an out-of-core scan, see
    :func:`~poisonguard.ondisk.staging_area`) every detector's scores and the per-sample
    results they share go to staging files as they are computed, and the result reads them
    from there: write the report before the staging area ends.
    """
    detectors = get_detectors(settings.detectors, trusted=trusted is not None)
    timings = dict(timings or {})
    warnings_: list[str] = []
    counts = dataset.class_counts()
    scored = counts >= max(2, settings.min_class_size)
    for code in np.flatnonzero(~scored):
        warnings_.append(
            f"class {dataset.class_names[code]!r} has {counts[code]} samples, fewer than "
            f"{settings.min_class_size}: too small for the detectors, not scored"
        )
        logger.warning(warnings_[-1])

    trusted_set = None
    if trusted is not None:
        trusted = align_classes(trusted, dataset, role="trusted set")
        start = time.perf_counter()
        trusted_set = _embed_trusted(trusted, dataset, embedding, settings)
        timings["embed:trusted"] = time.perf_counter() - start

    inputs = DetectorInputs(
        embedding,
        dataset.labels,
        min_class_size=settings.min_class_size,
        seed=settings.seed,
        reduce=settings.reduce,
        trusted=trusted_set,
        per_class_detectors=tuple(d.name for d in detectors if d.name in PER_CLASS_DETECTORS),
        runner=runner or LocalTasks(),
        progress=progress,
        store=RowStore(staging),
        table=dataset.x if dataset.kind == "table" else None,
    )
    unjudged: dict[int, str] = {}
    if inputs.per_class_detectors:
        start = time.perf_counter()
        per_class = inputs.per_class  # runs the per-class tasks together, timed on their own
        timings["detectors:per-class"] = time.perf_counter() - start
        unjudged = per_class_warnings(dataset, per_class, scored, warnings_)
    detector_scores: dict[str, Stored] = {}
    for detector in detectors:
        start = time.perf_counter()
        detector_scores[detector.name] = inputs.store.keep_scores(detector.run(inputs))
        timings[f"detector:{detector.name}"] = time.perf_counter() - start

    trigger_words = text_words = None
    if dataset.kind == "text" and embedding.model.get("source") != "torchscript":
        start = time.perf_counter()
        text_words = TextWords(dataset, embedding)
        trigger_words = text_trigger_words(dataset, embedding, text_words)
        timings["trigger-words"] = time.perf_counter() - start
        if trigger_words.shortcuts:
            warnings_.append(shortcut_note(trigger_words, dataset.class_names))
            logger.warning(warnings_[-1])

    chosen = {d.name for d in detectors}
    word_probabilities = trusted_words = None
    if dataset.kind == "text" and "confident-learning" in chosen:
        # the text model memorised every label: heads on its features agree with all of them,
        # so what a model that never saw a text says of its label comes from its words
        start = time.perf_counter()
        word_probabilities, trusted_words = _word_probabilities(dataset, trusted, settings.seed)
        timings["predict:words"] = time.perf_counter() - start

    start = time.perf_counter()
    searched = None if dataset.kind == "text" else searched_samples(dataset)
    transplant = transplant_test(dataset, embedding, settings.seed, searched=searched)
    warp = warp_test(dataset, embedding, settings.seed)
    decision = decide(
        dataset.labels,
        dataset.n_classes,
        scored,
        detector_scores,
        distance_ratio=(
            inputs.robust_fits.distance_ratio if RULE_DETECTORS["backdoor"] in chosen else None
        ),
        margin=embedding.margin,
        probabilities=embedding.probabilities,
        oos_probabilities=(
            inputs.out_of_sample_probabilities if RULE_DETECTORS["label-noise"] in chosen else None
        ),
        trigger_words=trigger_words,
        foreign_texts=text_foreign_groups(text_words, warnings_) if text_words else None,
        transplant=transplant,
        warp=None if warp is None else warp.share,
        warp_features=None if warp is None else warp.features,
        input_votes=input_neighbour_test(dataset, settings.seed, searched=searched),
        common_pattern=common_pattern_test(dataset, settings.seed, searched=searched),
        pattern_completion=pattern_completion_test(dataset, settings.seed, searched=searched),
        features=embedding.features,
        inputs=None if dataset.kind == "text" else dataset.x,
        seed=settings.seed,
        label_probabilities=word_probabilities,
        trusted_words=trusted_words,
        # a table's farthest few rows can share exact values naturally (see decide)
        farthest_samples=dataset.kind == "image",
        mislabel_like=dataset.kind == "image",
        # a table's binary column splits a class into two sides one value apart (see decide)
        pattern_split=dataset.kind == "image",
        splits=inputs.activation_clusters[1] if RULE_DETECTORS["cluster"] in chosen else None,
    )
    # the cluster tests ask the trained model (transplant test): not for texts or a user's model
    off = rules_off(chosen, exempt=() if transplant is not None else ("cluster",))
    for note in decision.notes:
        warnings_.append(note)
        # a rule off for want of its detector is logged once, by the clearer message below
        if not any(rule.detector in note for rule in off):
            logger.warning(note)
    for rule in off:
        logger.warning(rule.message)
    findings = class_findings(dataset, decision, counts, scored, off, unjudged)
    if "confident-learning" not in chosen:
        predicting = embedding.probabilities
    elif word_probabilities is not None:
        predicting = word_probabilities
    else:
        predicting = inputs.out_of_sample_probabilities
    reasons = sample_reasons(dataset, decision)
    timings["decide"] = time.perf_counter() - start

    return ScanResult(
        dataset=dataset,
        embedding=embedding,
        detector_scores=detector_scores,
        score=decision.score,
        flagged=decision.flagged,
        threshold=FLAG_THRESHOLD,
        class_findings=findings,
        reasons=reasons,
        fired={name: decision.fired[name] for name in detector_scores},
        target_classes=[dataset.class_names[c] for c in decision.target_classes],
        attack_kinds=decision.attack_kinds,
        finding=np.asarray(decision.kind, dtype=object),
        predicted=as_rows(predicting).map(_most_probable).astype(np.int64),
        predicted_probability=as_rows(predicting).map(_top_probability).astype(np.float64),
        settings=settings.as_dict(),
        timings=timings,
        warnings=warnings_,
        rules_off=off,
        label_floor=None if decision.label_floor is None else asdict(decision.label_floor),
        execution={
            "tasks": inputs.runner.description,
            "samples": where(dataset.x, staged=True),
            "features": where(embedding.features),
            # training's thread count changes the scores (see embed.torch_threads)
            "torch_threads": embedding.model.get("training", {}).get("torch_threads"),
        },
    )


class TextWords:
    """A text dataset's words as the scan's model reads them: token ids and which words each
    text holds, and the foreign-origin reader
    (:func:`~poisonguard.detectors.trigger_words.foreign_reader`), fitted on first use and
    then shared by the trigger-words test and the texts' check of the distance tests."""

    def __init__(self, dataset: Dataset, embedding: Embedding) -> None:
        self.dataset = dataset
        self.tokenizer = Tokenizer.from_weights(embedding.weights, embedding.model.get("tokenizer"))
        self.ids = self.tokenizer.encode(dataset.x)

    @functools.cached_property
    def bags(self):
        return bag_matrix(self.ids, self.tokenizer.vocabulary_size)

    @functools.cached_property
    def cut_texts(self) -> dict[int, np.ndarray]:
        """The token ids of each text the model's token limit cut, in full, by row."""
        limit = self.tokenizer.settings.max_tokens
        if self.ids.shape[1] < limit:
            return {}
        cut = {}
        # only a row the limit filled can have been cut: tokenize those texts again, not all
        for row in np.flatnonzero(self.ids[:, limit - 1] != 0):
            tokens = tokenize(self.dataset.x[row])
            if len(tokens) > limit:
                cut[int(row)] = np.array([self.tokenizer.id_of(t) for t in tokens], dtype=np.int64)
        return cut

    @functools.cached_property
    def read(self):
        return foreign_reader(self.bags, self.dataset.labels, self.dataset.n_classes)


def text_trigger_words(
    dataset: Dataset, embedding: Embedding, words: TextWords | None = None
) -> TriggerWordTest:
    """The deletion test (:mod:`poisonguard.detectors.trigger_words`) of a text dataset, with
    the text model the embedding's run trained and the vocabulary it learned; each word set
    carries its words' text."""
    model, feed = trained_model(embedding)
    words = words or TextWords(dataset, embedding)

    def logits(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(feed(rows)).numpy()

    settings = DecisionSettings()
    test = trigger_word_test(
        words.ids,
        dataset.labels,
        dataset.n_classes,
        words.tokenizer.vocabulary_size,
        logits,
        alpha=settings.gap_alpha,
        min_texts=settings.min_group_size,
        share=settings.word_share,
        reader=lambda: words.read,
        cut_texts=words.cut_texts,
    )
    return named_word_sets(test, words.tokenizer)


def text_foreign_groups(words: TextWords, warnings: list[str]) -> Callable[..., bool]:
    """``foreign_texts(code, rows, grown=False)`` for :func:`~poisonguard.decision.decide`:
    whether texts of a class are another class's texts once the words most of them share are
    deleted (:func:`~poisonguard.detectors.trigger_words.foreign_group`); a group that is not
    (or a completion undone: ``grown``) is named in ``warnings``. The words' reader is fitted
    on the first need only (most scans call no class) and is the trigger-words test's."""
    dataset = words.dataset

    def foreign_texts(code: int, rows: np.ndarray, grown: bool = False) -> bool:
        if words.read is None:
            return True  # no reader (a class too small for two folds): nothing to check with
        share = DecisionSettings().word_share
        reading = foreign_group(words.bags, words.read, rows, code, share=share)
        name = dataset.class_names[code]
        read_as = f"only {reading.foreign} of them read as another class"
        if reading.groups < rows.size:
            read_as = (
                f"{reading.foreign} of them read as another class, but what is left of them "
                f"is {reading.groups} distinct text{'s' if reading.groups != 1 else ''}, "
                f"{reading.foreign_groups} of which read so,"
            )
        if not reading.called and grown:
            warnings.append(
                f"group completion would have grown the flagged texts of class {name!r} to "
                f"{rows.size}, but without the words they share {read_as} to a model that "
                "never saw them: the completion is undone"
            )
            logger.warning(warnings[-1])
        elif not reading.called:
            warnings.append(
                f"{rows.size} texts of class {name!r} stand apart from the rest of it, but "
                f"without the words they share {read_as} to a model that never saw them: a "
                "topic of the class, not a dirty-label backdoor's texts; not flagged"
            )
            logger.warning(warnings[-1])
        return reading.called

    return foreign_texts


def shortcut_note(test: TriggerWordTest, class_names: list[str], shown: int = 5) -> str:
    """The scan's warning about the word sets that carry their class's label on their own but
    whose texts read as that class without them (``test.shortcuts``): a reviewer should know
    what a model of this data may lean on, though it is not a trigger."""
    by_class: dict[int, list[str]] = {}
    for word_set in test.shortcuts:
        by_class.setdefault(word_set.label, []).append(" ".join(word_set.core_text))
    parts = []
    for label, words in sorted(by_class.items()):
        listed = ", ".join(repr(w) for w in words[:shown])
        more = f" and {len(words) - shown} more" if len(words) > shown else ""
        parts.append(f"{listed}{more} in class {class_names[label]!r}")
    return (
        "words that carry a label on their own, though their texts read as that class without "
        f"them (a shortcut the data teaches, not a trigger; not flagged): {'; '.join(parts)}"
    )


def searched_samples(dataset: Dataset) -> KeptNorms:
    """The dataset's samples as the decision's nearest-sample searches read them: one reader
    per scan, shared by the tests below, that keeps each sample's squared norm once computed
    (:class:`~poisonguard.detectors.input_neighbours.KeptNorms`; the same neighbours)."""
    return KeptNorms(as_rows(dataset.x).take, dataset.n_samples)


def transplant_test(
    dataset: Dataset, embedding: Embedding, seed: int = 0, *, searched: KeptNorms | None = None
) -> Transplant | None:
    """The decision's transplant test (:mod:`poisonguard.detectors.transplant`) with the model
    the scan trained: images and table rows, which can be added to; ``None`` for texts and for
    a user's TorchScript extractor (the model file is not at hand here). The blended share runs
    on images only; ``seed`` draws the group members whose input neighbours it is fitted on.
    The callable's ``added=False`` leaves the difference added out (the farthest-samples test:
    a group chosen for its distance has a large difference by construction)."""
    if (
        dataset.kind == "text"
        or not embedding.weights
        or embedding.model.get("source") == "torchscript"
    ):
        return None
    samples = as_rows(dataset.x)
    searched = searched if searched is not None else searched_samples(dataset)
    predict = class_reader(embedding)

    def share(
        code: int, group: np.ndarray, core: np.ndarray, probes: np.ndarray, added: bool = True
    ) -> float:
        # the group's difference added (a blended pattern), what it holds in common stamped (a
        # patch), or (images) the probes blended as the group was made from its look-alikes (a
        # blend's fading too): the largest share; ``added=False`` leaves the first out
        difference, low, high = mean_difference(samples.take, group, core)
        probe_samples = samples.take(probes)
        shares = (
            [transplant_share(difference, probe_samples, predict, code, low=low, high=high)]
            if added
            else []
        )
        mask, values = common_stamp(samples.take, group, core, added_only=dataset.kind == "image")
        shares.append(stamped_share(mask, values, probe_samples, predict, code))
        if dataset.kind != "image":
            # a table row's nearest rows (standardised columns of unlike quantities) are not what
            # it was made from, and the fit's slope then shrinks the probes towards the group:
            # in the digits read as a table, a far group of flipped labels moved 75 % (the same
            # flips in the digit images: nothing flagged)
            return max(shares)
        queried, nearest = nearest_samples(
            searched, len(samples), group, standardise=False, seed=seed
        )
        # the class most members look like is not asked: the fit maps its samples onto the
        # group by construction, trigger or not (a natural part of the nines that looks like
        # ones moved 82 % of the ones, measured in the digits read as a table)
        asked = dataset.labels[probes] != look_alike_class(dataset.labels[nearest], code)
        if queried.size and asked.any():
            slope, offset = blend_fit(samples.take(queried), nearest_means(samples.take, nearest))
            blended = blended_share(
                slope, offset, probe_samples[asked], predict, code, low=low, high=high
            )
            shares.append(blended)
        return max(shares)

    return share


@dataclass(frozen=True)
class WarpTests:
    """The decision's ``warp`` and ``warp_features`` for one scan (see :func:`warp_test`)."""

    share: Warp
    features: WarpFeatures


def warp_test(dataset: Dataset, embedding: Embedding, seed: int = 0) -> WarpTests | None:
    """The decision's warp search (:mod:`poisonguard.detectors.warp_search`) with the model the
    scan trained, and the model's features of the probes warped by the field it found: images
    only (a table row has no pixels to move), ``None`` otherwise and for a user's TorchScript
    extractor. The share is a property of the class in the model, not of a group, so it is
    searched once per class and set of probes; ``seed`` draws the search's starting field."""
    if (
        dataset.kind != "image"
        or len(embedding.input_shape) != 3
        or not embedding.weights
        or embedding.model.get("source") == "torchscript"
    ):
        return None
    samples = as_rows(dataset.x)
    logits = differentiable_logits(embedding)
    searched: dict[tuple[int, bytes], tuple[float, np.ndarray | None]] = {}

    def search(code: int, probes: np.ndarray) -> tuple[float, np.ndarray | None]:
        positions = np.asarray(probes, dtype=np.int64)
        key = (int(code), positions.tobytes())
        if key not in searched:
            searched[key] = search_warp(logits, samples.take(positions), code, seed=seed)
        return searched[key]

    def share(code: int, probes: np.ndarray, sure: bool = False) -> float:
        reach, field = search(code, probes)
        if not sure or field is None:
            return reach
        # the same field, measured again at the bar (no second fit)
        positions = np.asarray(probes, dtype=np.int64)
        return measured_share(logits, samples.take(positions), code, field, confidence=SURE)

    model_features = []  # the model's penultimate layer, rebuilt once, when first asked

    def features(code: int, probes: np.ndarray) -> np.ndarray:
        positions = np.asarray(probes, dtype=np.int64)
        _, field = search(code, positions)
        if field is None:
            return np.zeros((0, embedding.features.shape[1]), dtype=np.float32)
        if not model_features:
            model_features.append(differentiable_features(embedding))
        return warped_features(model_features[0], samples.take(positions), field)

    return WarpTests(share, features)


def input_neighbour_test(
    dataset: Dataset, seed: int, *, searched: KeptNorms | None = None
) -> InputVotes | None:
    """The decision's input-neighbour test (:mod:`poisonguard.detectors.input_neighbours`) on
    the dataset's own samples: images and table rows (columns standardised); ``None`` for
    texts."""
    if dataset.kind == "text":
        return None
    searched = searched if searched is not None else searched_samples(dataset)

    def votes(group: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return neighbour_votes(
            searched,
            dataset.labels,
            group,
            standardise=dataset.kind == "table",
            excluded=excluded,
            seed=seed,
        )

    return votes


def _pattern_fits(dataset: Dataset) -> bool:
    """Whether the common-pattern fits can run on the dataset's samples: images of at least
    :data:`~poisonguard.detectors.common_pattern.MIN_VALUES` values."""
    return dataset.kind == "image" and as_rows(dataset.x).width >= MIN_VALUES


def common_pattern_test(
    dataset: Dataset, seed: int, *, searched: KeptNorms | None = None
) -> CommonPattern | None:
    """The decision's common-pattern test (:mod:`poisonguard.detectors.common_pattern`) on the
    dataset's own samples: images only (a table row's nearest rows, in standardised columns of
    unlike quantities, are not what it was made from) of at least
    :data:`~poisonguard.detectors.common_pattern.MIN_VALUES` values; ``None`` otherwise. The
    callable gives the queried members and each one's agreement with the others."""
    if not _pattern_fits(dataset):
        return None
    searched = searched if searched is not None else searched_samples(dataset)

    def agrees(
        group: np.ndarray, sources: np.ndarray, code: int, excluded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        queried, looks, left = residuals(
            searched, dataset.labels, group, sources, code, excluded=excluded, seed=seed
        )
        return queried, agreement(left, looks)

    return agrees


def pattern_completion_test(
    dataset: Dataset, seed: int, *, searched: KeptNorms | None = None
) -> PatternCompletion | None:
    """The decision's completion by a group's pattern
    (:func:`~poisonguard.detectors.common_pattern.carrying`, then
    :func:`~poisonguard.detectors.common_pattern.trimmed_refitted`) on the dataset's own
    samples, where the common-pattern test runs (images of at least
    :data:`~poisonguard.detectors.common_pattern.MIN_VALUES` values); ``None`` otherwise."""
    if not _pattern_fits(dataset):
        return None
    searched = searched if searched is not None else searched_samples(dataset)

    def complete(
        members: np.ndarray, in_group: np.ndarray, code: int, excluded: np.ndarray
    ) -> np.ndarray:
        judged, left, sources = member_residuals(
            searched, dataset.labels, members, code,
            group=in_group, excluded=excluded, seed=seed,
        )  # fmt: skip
        where = np.searchsorted(members, judged)
        grown = np.asarray(in_group, dtype=bool).copy()
        if judged.size:
            grown[where] |= carrying(left, grown[where])
            # and the group, grown, without the members that do not carry its pattern
            grown[where] = trimmed_refitted(
                searched, dataset.labels, members, code, in_group=grown[where],
                judged=judged, residuals=left, sources=sources, excluded=excluded, seed=seed,
            )  # fmt: skip
        return grown

    return complete


def _most_probable(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.argmax(axis=1)


def _top_probability(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.max(axis=1)


FLAG_THRESHOLD = 0.5
"""Fused scores of flagged samples are at least this, of the others below it."""


def _word_probabilities(
    dataset: Dataset, trusted: Dataset | None, seed: int
) -> tuple[np.ndarray, TrustedWords | None]:
    """Out-of-sample probabilities of the texts' labels from heads on their words, and, with a
    trusted set (its labels in ``dataset``'s codes), the trusted texts read by the same heads:
    the two are cross-fitted together (the trusted texts' labels are clean, so they train the
    heads like any other), so that the label-noise rule compares like with like."""
    texts, labels = dataset.x, dataset.labels
    if trusted is not None:
        texts = [*dataset.x, *trusted.x]
        labels = np.concatenate([dataset.labels, trusted.labels])
    probabilities = out_of_sample_probabilities(
        word_columns(texts, seed=seed), labels, n_classes=dataset.n_classes, seed=seed
    )
    if trusted is None:
        return probabilities, None
    n = len(dataset.x)
    probabilities = np.asarray(probabilities)
    return probabilities[:n], TrustedWords(probabilities[n:], trusted.labels)


def _embed_trusted(
    trusted: Dataset, dataset: Dataset, embedding, settings: ScanSettings
) -> TrustedSet:
    """Embed the trusted set (its labels in ``dataset``'s codes) with the scan's model."""
    labels = trusted.labels
    features, probabilities = embed_with(embedding, trusted.x, model_file=settings.model_file)
    return TrustedSet(features, probabilities, labels)
