"""What a scan says in words: each class's verdict, a reason for each flagged sample, and the
flagging rules that did not run.

:data:`RULE_DETECTORS` is the contract between the decision's flagging rules and the detectors
they need; :func:`rules_off` names the rules a selection of detectors leaves off. The scan
(:func:`poisonguard.scan.scan_embedding`) turns a :class:`~poisonguard.decision.Decision` into
:class:`~poisonguard.results.ClassFinding` objects (:func:`class_findings`) and per-sample
reasons (:func:`sample_reasons`) here, and logs what the per-class detectors could not judge
(:func:`per_class_warnings`).
"""

from __future__ import annotations

import logging

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.decision import (
    BACKDOOR,
    CLUSTERED_GROUP,
    COMMON_PATTERN,
    FARTHEST_SAMPLES,
    FOREIGN_CLUSTER,
    FOREIGN_GROUP,
    FOREIGN_SPLIT,
    LABEL_NOISE,
    MISLABEL_LIKE,
    MISLABEL_LIKE_P,
    PATTERN_SPLIT,
    SEPARATED_GROUP,
    SINGLE_SOURCE,
    TRIGGER_WORDS,
    ClassEvidence,
    Decision,
    DecisionSettings,
    carried_by_warp,
)
from poisonguard.detectors.warp_search import WARP_BOUND
from poisonguard.results import ClassFinding, RuleOff

__all__ = [
    "RULE_DETECTORS",
    "class_findings",
    "per_class_warnings",
    "rules_off",
    "sample_reasons",
]

logger = logging.getLogger(__name__)


LABEL_NOISE_SPREAD = "label-noise-spread"
LABEL_NOISE_PAIR = "label-noise-pair"

RULE_DETECTORS = {
    "backdoor": "spectre",
    "label-noise": "confident-learning",
    "cluster": "activation-clustering",
}
"""The decision's contract: the detector each flagging rule needs (:func:`rules_off`). The
backdoor tests (separated-group and mixed-origin) rank a class's samples by spectre's robust
distance ratios; the label-noise rule reads confident learning's out-of-sample probabilities;
the cluster tests (mixed-origin and foreign cluster) read activation clustering's two-means
split of each class."""

_RULE_TEXT = {
    # rule: (its name, what its warning starts with, what it takes from its detector, what
    # goes unflagged without it)
    "backdoor": (
        "the backdoor tests",
        "the backdoor tests (separated-group and mixed-origin) did not run: they need",
        "its robust distance ratios",
        "backdoor poisons",
    ),
    "label-noise": (
        "the label-noise rule",
        "the label-noise rule did not run: it needs",
        "its out-of-sample probabilities",
        "mislabelled samples",
    ),
    "cluster": (
        "the cluster tests",
        "the cluster tests (mixed-origin and foreign cluster) did not run: they need",
        "its two-means split of each class",
        "backdoor poisons that fill half their target class (or, with two or three classes, "
        "a cluster that looks like another class)",
    ),
}


def rules_off(detectors, exempt=()) -> list[RuleOff]:
    """The flagging rules that cannot run with only ``detectors`` (names) selected.

    :func:`~poisonguard.decision.decide` turns a rule off when the detector it needs did not
    run (see :data:`RULE_DETECTORS`); a scan that then flags nothing has not ruled that attack
    out, and the report and the command line say so. Rules in ``exempt`` do not apply to the
    dataset (the cluster tests to texts) and are not listed.
    """
    chosen = set(detectors)
    off = []
    for rule, detector in RULE_DETECTORS.items():
        if detector in chosen or rule in exempt:
            continue
        name, did_not_run, needs, missed = _RULE_TEXT[rule]
        off.append(
            RuleOff(
                rule=rule,
                detector=detector,
                needs=needs,
                summary=f"{name} did not run ({detector} not selected)",
                message=(
                    f"{did_not_run} the {detector} detector ({needs}), which the selected "
                    f"detectors (--detectors) leave out, so {missed} are not flagged; add "
                    f"{detector} to --detectors to run it"
                ),
            )
        )
    return off


def sample_reasons(dataset: Dataset, decision: Decision) -> list[str]:
    """A plain-words reason for every flagged sample ("" for the others)."""
    names = dataset.class_names
    reasons = [""] * dataset.n_samples
    fired_names = list(decision.fired)
    for i in np.flatnonzero(decision.flagged):
        label = names[int(dataset.labels[i])]
        detectors = [name for name in fired_names if decision.fired[name][i]]
        fired = f"; detectors that fired: {', '.join(detectors)}" if detectors else ""
        if decision.kind[i] == BACKDOOR:
            triggers = decision.evidence[int(dataset.labels[i])].triggers
            by_words = decision.by_trigger_words
            if triggers and by_words is not None and by_words[i]:
                reasons[i] = (
                    f"labelled {label!r} and holds {_words(triggers)}, words that carry that "
                    f"label on their own (trigger-words test; suspected backdoor trigger){fired}"
                )
                continue
            rule = decision.evidence[int(dataset.labels[i])].rule
            if rule == SEPARATED_GROUP:
                group = "a group that stands apart from the rest of"
            elif rule == CLUSTERED_GROUP:
                group = "a cluster of mixed origin filling half of"
            elif rule == FOREIGN_CLUSTER:
                group = "a cluster that looks like another class in the input, inside"
            elif rule == FOREIGN_GROUP:
                group = "a far group that looks like other classes in the input, inside"
            elif rule == SINGLE_SOURCE:
                group = "a far group that looks like one other class in the input, inside"
            elif rule == FARTHEST_SAMPLES:
                group = "the farthest samples, which share a trigger-like pattern, of"
            elif rule == PATTERN_SPLIT:
                group = "the part carrying one added pattern (a clean-label trigger's) of"
            elif rule == MISLABEL_LIKE:
                group = "the samples read with near certainty as other classes, yet sharing "
                group += "what carries the label, of"
            elif rule == COMMON_PATTERN:
                group = "the samples read with near certainty as other classes that hold one "
                group += "pattern their look-alikes do not, of"
            elif rule == FOREIGN_SPLIT:
                group = "the part that looks like other classes in the input, set apart along "
                group += "the class's own direction, of"
            else:
                group = "a far, easily learned group of mixed origin inside"
            reasons[i] = f"part of {group} class {label!r} (suspected backdoor target){fired}"
        elif decision.kind[i] == LABEL_NOISE and (
            pairs := decision.evidence[int(dataset.labels[i])].flipped_from
        ):
            read = " or ".join(repr(names[pair.predicted]) for pair in pairs)
            reasons[i] = (
                f"labelled {label!r} but read as {read} by a model that never saw it, in a class "
                f"pair whose confident disagreements run one way (targeted-flip test){fired}"
            )
        elif decision.kind[i] == LABEL_NOISE:
            reasons[i] = (
                f"labelled {label!r} but more likely mislabelled than not: a model that never "
                f"saw it finds another class far more likely, at an estimated noise rate of "
                f"{decision.noise_rate:.1%}{fired}"
            )
    return reasons


def per_class_warnings(
    dataset: Dataset, per_class, scored: np.ndarray, warnings_: list[str]
) -> dict[int, str]:
    """Log and add to ``warnings_`` what the per-class detectors could not judge in each class
    (identical samples, a robust core of copies) and how they coped; returns, by class code,
    why the backdoor tests could not judge the classes whose robust fit failed."""
    unjudged: dict[int, str] = {}
    for code, notes in sorted(per_class.notes.items()):
        if not scored[code]:
            continue  # already said: too small to score
        name = dataset.class_names[code]
        text = "; ".join(notes)
        if code in per_class.unfitted:
            unjudged[code] = text
            text += "; the backdoor tests could not judge this class"
        warnings_.append(f"class {name!r}: {text}")
        logger.warning(warnings_[-1])
    for code in sorted(per_class.unfitted - set(unjudged)):
        if scored[code]:
            unjudged[code] = "spectre could not fit a robust core"
    return unjudged


def class_findings(
    dataset: Dataset,
    decision: Decision,
    counts: np.ndarray,
    scored: np.ndarray,
    off: list[RuleOff] | tuple = (),
    unjudged: dict[int, str] | None = None,
) -> list[ClassFinding]:
    """Each class's verdict; a class where nothing was found is ``"clean"`` only when no rule
    was off (``off``) and the backdoor tests could judge it (not in ``unjudged``, which says
    why by class code), else ``"not-cleared"``."""
    unjudged = unjudged or {}
    findings = []
    flagged_counts = np.bincount(dataset.labels[decision.flagged], minlength=dataset.n_classes)
    names = dataset.class_names
    for code, name in enumerate(names):
        count, hits = int(counts[code]), int(flagged_counts[code])
        item = decision.evidence[code]
        far = f"{item.far_share:.1%} of the class lies far from its core"
        if not scored[code]:
            verdict, reason = "skipped", f"only {count} samples; too few for the detectors"
        elif item.backdoor and item.rule == TRIGGER_WORDS:
            verdict = "backdoor-target"
            reason = "; ".join(_trigger_reason(trigger) for trigger in item.triggers)
            reason += f"; {hits} samples flagged"
        elif item.backdoor and item.rule == CLUSTERED_GROUP:
            verdict = "backdoor-target"
            reason = (
                f"the class splits into two clusters (activation clustering) and the "
                f"{item.cluster_size} samples of one have much more varied runner-up classes "
                f"(entropy {item.far_entropy:.2f} vs {item.core_entropy:.2f}), as poisons from "
                f"several source classes do when they fill half their target class and leave "
                f"it no clean core{_transplanted(item, 'the other cluster')}; {hits} samples "
                "flagged"
            )
        elif item.backdoor and item.rule == FOREIGN_CLUSTER:
            verdict = "backdoor-target"
            reason = (
                f"the class splits into two clusters (activation clustering), and the "
                f"{item.cluster_size} samples of the smaller look, in the input itself, like "
                f"another class: the nearest neighbours outside the cluster of "
                f"{item.foreign_share:.0%} of them carry another label (input-neighbour test), "
                f"yet the model learned them as this class, as it learns a dirty-label "
                f"backdoor's poisons{_transplanted(item, 'the other cluster')}; {hits} samples "
                "flagged"
            )
        elif item.backdoor and item.rule == FOREIGN_GROUP:
            verdict = "backdoor-target"
            reason = (
                f"{far}; part of it looks like other classes in the input itself: of the "
                f"{item.cluster_size} far samples nearest to that part in the model's features, "
                f"{item.foreign_share:.0%} of those queried have nearest neighbours outside the "
                f"far group that carry another label (input-neighbour test), yet the model "
                f"learned them as this class; {_source_moved(item, None)}: a trigger that "
                f"carries the label, hidden in the class's own far tail; {hits} samples flagged"
            )
        elif item.backdoor and item.rule == SINGLE_SOURCE:
            verdict = "backdoor-target"
            source = names[item.source_class]
            reason = (
                f"{far}; part of it looks like class {source!r} in the input itself, and of "
                f"the {item.cluster_size} far samples nearest to that part in the model's "
                f"features, {item.foreign_share:.0%} of those queried have nearest neighbours "
                f"outside the far group that carry the label {source!r} (input-neighbour "
                f"test); {_source_moved(item, source)}: a trigger that carries the label from "
                f"one source class, as a source-specific backdoor's does; {hits} samples flagged"
            )
        elif item.backdoor and item.rule == FARTHEST_SAMPLES:
            verdict = "backdoor-target"
            reason = (
                f"{far}; its {item.cluster_size} farthest samples hold something in common "
                f"that, stamped or blended into typical samples of the other classes, makes the "
                f"model read {item.transplant_share:.0%} of them as this class (transplant "
                f"test): a trigger that carries the label, on too few samples to form a group "
                f"of their own; {hits} samples flagged"
            )
        elif item.backdoor and item.rule == PATTERN_SPLIT:
            verdict = "backdoor-target"
            reason = (
                f"the class splits in two along a direction no other class varies along: an "
                f"empty stretch that a class without such a split would show with probability "
                f"{item.pattern_gap_p:.1e} (pattern-split test); shifted by the sides' mean "
                f"difference, one side is like the other (the shift leaves "
                f"{max(item.pattern_left, 0.0):.0%} of what told them apart): "
                f"{item.cluster_size} samples of the class carry one added pattern, labels "
                f"kept, as a clean-label backdoor's poisons do; that pattern added to typical "
                f"samples of the other classes makes the model read "
                f"{item.transplant_share:.0%} of them as this class, taken away "
                f"{item.pattern_reverse_share:.0%}; {hits} samples flagged"
            )
        elif item.backdoor and item.rule == MISLABEL_LIKE:
            verdict = "backdoor-target"
            reason = (
                f"{item.cluster_size} samples of the class are read as other classes with near "
                f"certainty by heads that never saw them (their label under "
                f"{MISLABEL_LIKE_P:.0%}), as mislabelled samples are; yet what sets them apart "
                f"from the core, added to typical samples of the other classes, stamped or "
                f"blended into them, makes the model read {item.transplant_share:.0%} of them "
                f"as this class (transplant test), where other classes' looks would not: a "
                f"dirty-label trigger too rare to stand out (mislabel-like-group test); {hits} "
                "samples flagged"
            )
        elif item.backdoor and item.rule == COMMON_PATTERN:
            verdict = "backdoor-target"
            beyond = (
                f"{item.common_pattern_share:.0%} of them hold, beyond what their nearest "
                f"samples of the class they look like and of this class explain, one pattern "
                f"that the members looking like other classes hold too, beyond chance, and "
                f"{item.pattern_agreeing} far beyond it (corrected for the group's size), where "
                f"{item.pattern_disagreeing} point as far away from it (common-pattern test)"
            )
            reason = (
                f"samples of the class are read as other classes with near certainty by heads "
                f"that never saw them (their label under {MISLABEL_LIKE_P:.0%}), as mislabelled "
                f"samples are, and the model does not take what sets them apart for this class; "
                f"yet {beyond}: a trigger cut into pieces or learned too faintly, not "
                f"mislabels, whose leftovers are each their own; {item.cluster_size} samples "
                f"hold it; {hits} samples flagged"
            )
        elif item.backdoor and item.rule == FOREIGN_SPLIT:
            verdict = "backdoor-target"
            reason = (
                f"the class splits in two along a direction no other class varies along: an "
                f"empty stretch that a class without such a split would show with probability "
                f"{item.pattern_gap_p:.1e} (pattern-split test); the {item.cluster_size} "
                f"samples of the smaller side look like other classes in the input itself "
                f"({item.foreign_share:.0%} of those queried have nearest neighbours that carry "
                f"another label: input-neighbour test), yet carry this label, and what sets them "
                f"apart, added to typical samples of the other classes, stamped or blended into "
                f"them, makes the model read {item.transplant_share:.0%} of them as this class "
                f"(transplant test): a dirty-label trigger; {hits} samples flagged"
            )
        elif item.backdoor and item.rule == SEPARATED_GROUP:
            verdict = "backdoor-target"
            gap = item.gap
            reason = (
                f"{gap.size} samples stand apart from the rest of the class: an empty stretch of "
                f"distance ratios between {gap.lower:.3g} and {gap.upper:.3g} that a class "
                f"without such a group would show with probability {gap.p_value:.1e} "
                f"(separated-group test); a model that never saw them still puts "
                f"{item.group_agrees:.0%} of them in this class, so they are not mislabelled "
                f"samples of another class{_transplanted(item)}; {hits} samples flagged"
            )
        elif item.backdoor:
            verdict = "backdoor-target"
            if item.easy:
                easier = "the core" if item.far_margin >= item.core_margin else "a typical class"
                apart = (
                    f"that group is learned more easily than {easier} (mean margin "
                    f"{item.far_margin:.2f} vs {item.core_margin:.2f} for the core, "
                    f"{item.typical_margin:.2f} for a typical class)"
                )
            elif item.gap is None:  # called by the transplant test alone
                apart = "that group is neither learned more easily than the core nor ends at a gap"
            else:
                apart = (
                    f"that group ends at an empty stretch of distance ratios between "
                    f"{item.gap.lower:.3g} and {item.gap.upper:.3g} that a class without such "
                    f"a group would show with probability {item.gap.p_value:.1e}, so it is not "
                    f"the class's natural outliers"
                )
            reason = (
                f"{far}; {apart}, and its runner-up classes are more varied (entropy "
                f"{item.far_entropy:.2f} vs {item.core_entropy:.2f}), as poisons from several "
                f"source classes are{_transplanted(item)}; {hits} samples flagged"
            )
        elif item.label_flags and item.flipped_from:
            verdict = "noisy-labels"
            reason = "; ".join(_pair_reason(pair, names) for pair in item.flipped_from)
            reason += f"; {item.label_flags} samples flagged"
        elif item.label_flags:
            verdict = "noisy-labels"
            reason = (
                f"{item.label_flags} samples are more likely mislabelled than not, given what a "
                f"model that never saw them predicts and the noise rate the confident joint "
                f"estimates ({decision.noise_rate:.1%}); samples that look like another class "
                "are spread over many class pairs in this dataset"
            )
        elif code in unjudged:
            verdict = "not-cleared"
            reason = (
                f"nothing flagged, but the backdoor tests could not judge this class: "
                f"{unjudged[code]}"
            )
            if off:
                reason += f"; and {' and '.join(rule.summary for rule in off)}"
        else:
            verdict = "not-cleared" if off else "clean"
            reason = _clean_reason(item, far, off)
        if verdict == "backdoor-target":
            if item.completed or item.completed_in_input or item.completed_by_pattern:
                reason += f" ({_completion_note(item)})"
            if item.left_by_pattern:
                reason += (
                    f"; {item.left_by_pattern} samples the tests or completion had taken in "
                    "were left out: they do not carry the group's pattern beyond their "
                    "look-alikes"
                )
            if item.warp_over_pattern:
                reason += (
                    f"; a smooth warp of at most {WARP_BOUND:g} pixel, searched for on typical "
                    f"samples of the other classes, makes the model read {item.warp_share:.0%} "
                    f"of others as this class (warp search), at least as many as the group's "
                    f"pattern ({_share(item.pattern_share)}): a warp carries the class as far, "
                    "so the group was grown in the model's features only, not trimmed to a "
                    "pattern"
                )
            elif carried_by_warp(item) and item.rule not in _PATTERN_TOLD:
                reason += (
                    f"; what the group holds as a pattern moved at most "
                    f"{_share(item.pattern_share)} of them, so the warp carried the call "
                    "(WaNet's is a warp) and the group was grown in the model's features only"
                )
            elif carried_by_warp(item):
                reason += (
                    f"; the transplant share came from a warp, not a pattern: a smooth warp of "
                    f"at most {WARP_BOUND:g} pixel, searched for on typical samples of the other "
                    f"classes, makes the model read {item.warp_share:.0%} of others as this "
                    f"class (warp search; what the group holds as a pattern, at most "
                    f"{_share(item.pattern_share)}), as a warping trigger (WaNet) does, so the "
                    "group was grown in the model's features only"
                )
            elif not np.isnan(item.warp_probes_share):
                reason += (
                    f"; a smooth warp of at most {WARP_BOUND:g} pixel makes the model read "
                    f"{item.warp_probes_share:.0%} of typical samples of the other classes as "
                    "this class (warp search): those samples, warped and not, joined group "
                    "completion in the model's features, to show it what the warp changes"
                )
            evidence = item.rule
        elif verdict == "noisy-labels":
            evidence = LABEL_NOISE_PAIR if item.flipped_from else LABEL_NOISE_SPREAD
        else:
            evidence = ""
        words = [list(t.core_text) for t in item.triggers] if evidence == TRIGGER_WORDS else []
        findings.append(
            ClassFinding(code, name, count, hits, verdict, reason, evidence, trigger_words=words)
        )
    return findings


_PATTERN_TOLD = (
    COMMON_PATTERN,
    FARTHEST_SAMPLES,
    FOREIGN_SPLIT,
    MISLABEL_LIKE,
    PATTERN_SPLIT,
    TRIGGER_WORDS,
)
"""The rules whose reason gives a pattern's share even where a warp carried the class (the
others give the warp search's: :func:`_source_moved`, :func:`_transplanted`)."""


def _share(value: float) -> str:
    return "not asked" if np.isnan(value) else f"{value:.0%}"


def _source_moved(item: ClassEvidence, source: str | None) -> str:
    """What moved typical samples of ``source`` (``None``: of the other classes) to the class:
    a pattern of the group's (the transplant test), or a warp (the warp search)."""
    whom = "the other classes" if source is None else repr(source)
    if carried_by_warp(item):
        return (
            f"a smooth warp of at most {WARP_BOUND:g} pixel, searched for on typical samples of "
            f"{whom}, makes the model read {item.transplant_share:.0%} of them as this "
            "class (warp search)"
        )
    return (
        f"they differ from the core by something that, added to typical samples of {whom}, "
        f"stamped or blended into them, makes the model read {item.transplant_share:.0%} of "
        "them as this class (transplant test)"
    )


def _completion_note(item: ClassEvidence) -> str:
    """How many samples group completion added, and in which space."""
    spaces = [
        f"{count} {how}"
        for count, how in (
            (item.completed, "by a discriminant in the model's features"),
            (item.completed_in_input, "in the samples themselves (the group's stamp, or a "
             "discriminant there)"),
            (item.completed_by_pattern, "by what they hold beyond their look-alikes, the "
             "group's pattern"),
        )
        if count
    ]  # fmt: skip
    total = item.completed + item.completed_in_input + item.completed_by_pattern
    return f"{total} of them joined by group completion: {' and '.join(spaces)}"


def label_noise_evidence(finding: ClassFinding | None) -> str:
    """The test that carried a label-noise flag in the class of ``finding``: the one-sided pair
    test where it called the class, else the test of flips spread over the pairs."""
    if finding is not None and finding.evidence == LABEL_NOISE_PAIR:
        return LABEL_NOISE_PAIR
    return LABEL_NOISE_SPREAD


def _pair_reason(pair, names) -> str:
    given, read = names[pair.given], names[pair.predicted]
    return (
        f"{pair.count} samples labelled {given!r} are confidently {read!r} to a model that never "
        f"saw them, against {pair.reverse} labelled {read!r} confidently {given!r}: natural "
        f"confusion runs both ways, and an imbalance this large would occur with probability "
        f"{pair.p_value:.1e} given how one-sided the dataset's other class pairs are "
        f"(targeted-flip test); flagged: the samples labelled {given!r} that model reads as "
        f"{read!r}"
    )


def _words(triggers) -> str:
    """The core words of ``triggers`` (word sets), quoted: "'cf'", "'bond' and 'james'"."""
    return " or ".join(_all_of(t.core_text) for t in triggers)


def _all_of(words) -> str:
    quoted = [repr(w) for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _trigger_reason(trigger) -> str:
    deleted = ", ".join(repr(w) for w in trigger.text)
    if trigger.by_origin:
        # a part of a list trigger's core, flagged by where its texts come from alone
        return (
            f"the {trigger.read} texts of the class that hold {trigger.core_text[0]!r}, a word "
            f"of a trigger found here, but not the rest of it moved {trigger.flips} of "
            f"{trigger.tested} into another class when it was deleted; without it a model that "
            f"never saw them reads {trigger.foreign} of them as another class, a majority "
            f"beyond chance, as a dirty-label trigger's texts are: they are flagged{_past(trigger)}"
        )
    # a phrase trigger was tested on the texts holding its anchor, then grown
    held = trigger.anchor_text or trigger.core_text[0]
    if trigger.unlearned:
        # found by where its texts come from alone: the model did not learn the words
        return (
            f"deleting the words {deleted} from the {trigger.tested} texts of the class that "
            f"hold {held!r} and are read as this class moved {trigger.flips} of them into "
            f"another class: the model has not learned these words as a shortcut; but without "
            f"them a model that never saw these texts reads {trigger.foreign} of "
            f"{trigger.read} as another class, where the class's word sets read "
            f"{trigger.class_foreign:.0%} of theirs so, a share this large having probability "
            f"{trigger.origin_p_value:.1e} after the correction for every word set tested "
            f"(foreign-origin test): another class's texts given this label and sharing these "
            f"words, as a dirty-label backdoor's texts are, whether or not this model learned "
            f"the trigger; the texts of the class holding {_all_of(trigger.core_text)}"
            f"{' in that order' if trigger.phrase.size else ''} are flagged{_past(trigger)}"
        )
    return (
        f"deleting the words {deleted} from the {trigger.tested} texts of the class that hold "
        f"{held!r} and are read as this class moved {trigger.flips} of them "
        f"into another class; texts near the boundary move at a rate that makes this "
        f"probability {trigger.p_value:.1e} after the correction for every word set tested "
        f"(trigger-words test): these words carry the label on their own, as a backdoor "
        f"trigger does{_foreign(trigger)}; the texts of the class holding "
        f"{_all_of(trigger.core_text)}{' in that order' if trigger.phrase.size else ''} are "
        f"flagged{_past(trigger)}"
    )


def _past(trigger) -> str:
    """How many of a trigger's texts hold it only past the words the model reads."""
    if not trigger.past_limit:
        return ""
    return (
        f" ({trigger.past_limit} of them hold it only past the words the model reads of a "
        "text, where it never saw it)"
    )


def _foreign(trigger) -> str:
    """What the foreign-origin check read, where it ran."""
    if not trigger.read:
        return ""
    return (
        f", and without them a model that never saw these texts reads {trigger.foreign} of "
        f"{trigger.read} as another class, as a dirty-label trigger's texts are"
    )


def _clean_reason(item, far: str, off: list[RuleOff] | tuple = ()) -> str:
    if off:
        skipped = " and ".join(rule.summary for rule in off)
        if not np.isfinite(item.far_share):  # the backdoor tests did not run
            return f"nothing flagged, but {skipped}"
        return f"{_clean_reason(item, far)}; but {skipped}"
    if not np.isfinite(item.far_share):
        return "no backdoor rule was run; no label-noise flags"
    if not np.isfinite(item.far_margin) or item.far_share < DecisionSettings().min_group_share:
        return f"{far}; too few far samples to form a group"
    if item.far_margin < min(item.core_margin, item.typical_margin):
        return (
            f"{far}, but those samples are harder to learn than the core and than a typical "
            "class: natural outliers"
        )
    if np.isfinite(item.transplant_share):
        return (
            f"{far}; those samples are easy to learn{_transplanted(item)}: a natural sub-type, "
            "not a trigger"
        )
    return (
        f"{far}; those samples are easy to learn but their runner-up classes are not more "
        f"varied than the core's (entropy {item.far_entropy:.2f} vs {item.core_entropy:.2f})"
    )


def _transplanted(item, against: str = "the core") -> str:
    """What the transplant test found, as a clause ("" when it did not run); the warp search
    where a warp carried the class."""
    if not np.isfinite(item.transplant_share):
        return ""
    if carried_by_warp(item):
        return f"; {_source_moved(item, None)}"
    return (
        f"; their difference from {against}, added to typical samples of the other classes "
        f"(or what they hold in common, stamped on them, or blended into them as the group "
        f"is into its look-alikes), makes the model read "
        f"{item.transplant_share:.0%} of them as this class (transplant test)"
    )
