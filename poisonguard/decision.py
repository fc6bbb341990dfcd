"""From detector scores to flags, without knowing the poison rate or the target class.

Two attacks leave different traces, so two rules decide, each on the evidence that fits it.

**Backdoor (a group that does not belong in its class).** Every class is robustly whitened
(:mod:`poisonguard.detectors.spectre`); a sample's *distance ratio* is its squared robust distance
over the median of the estimator's clean support (about 1 for a typical sample). Real classes
have far members too: rare styles, natural sub-types (e.g. two kinds of bag), mislabelled
samples. Two tests call a class a backdoor target; either suffices.

*Separated group* (:func:`poisonguard.tail_gap.tail_gap`). A natural tail thins out smoothly;
poisons, which share a trigger, sit together apart from the rest of the class, with an empty
stretch of distance ratios between them and the class (measured on Fashion-MNIST: at 0.3 % patch
poisons, the 180 poisons lie beyond ratio 72 and the next clean sample at 16; all-to-all, every
class's ~300 poisons end at a drop of 2-4x). The test's false-call rate comes from a null model,
not a tuned constant: beyond the core, the log distance ratios of a class have an exponential
tail (a Pareto tail in the ratio), so by Rényi's representation the normalised spacings ``j
(L_(j) - L_(j+1))`` of the sorted log ratios are independent exponentials whose local mean the
spacings on either side of a gap estimate. The most unlikely spacing in the far region (ratio
above ``far_ratio``) gets a p-value from that null (an F law for each spacing, then the smallest
of ``m``), and a class is called when it is below ``gap_alpha`` divided by the number of classes
tested (Bonferroni). Groups are sought in the farthest quarter of a class (``TAIL_SHARE``): the
model holds for a tail, and a larger group is a mode of the class, which this test cannot tell
from a natural sub-type (the bags of Fashion-MNIST have a second mode of up to 46 % of the
class), unless the transplant test below confirms it: then groups up to half the class
(``LARGE_TAIL_SHARE``) are sought (an all-to-one backdoor at 5 % is a third of its target,
and there a natural mode reached p = 3e-5). On the clean Fashion-MNIST the smallest class
p-value was 0.36, and over eleven poisoned
60,000-image runs the smallest of a class without poison 4.6e-3 (the threshold is 1e-4).
Mislabelled samples form far groups too, but a model that never saw them puts them in another
class, so the group is called only when out-of-sample heads put at least half of it in its own
class (under 10 % random flips four classes had a significant gap, groups of 171-407 samples of
which out-of-sample heads put at most 0.4 % in their own class). The test needs neither a
minimum share nor several source classes, so it covers source-specific and all-to-all backdoors,
low rates and two-class tasks.

*Mixed origin.* The far group (ratio above ``far_ratio``) is at least ``min_group_share`` of
the class, of *diverse origin* (its runner-up-class entropy exceeds the core's by
``min_entropy_gain``: poisons come from several source classes) and not the class's natural
outliers: it is *easy* (its mean margin, the area under the margin, is at least the core's or
the median class core's: the trigger is a shortcut, Li et al., NeurIPS 2021, where natural
outliers are hard) or it ends at a significant gap, searched from the core out over the whole
class (on the 8x8 digits with a 5 % patch the poisons reach 0.9 of a typical core's margin,
and end at a gap of p = 2e-5). Without a gap, the transplant test must confirm the group, easy
or not, where it can run (without it, an easy group is called as before); so must a group beyond
the gap larger than the farthest quarter of the class (``TAIL_SHARE``), a mode where the gap's
tail model does not hold (the sandals' natural far mode, 38 % of the class, ended at a gap of
p = 7e-6 and moved 2 % of the probes). It needs at least
four classes. (The typical core matters
when the target class itself is unusually easy: a 3x3 patch on the 8x8 digits' class 0,
whose core has a mean margin of 12.4 against a median of 9.9 and the poisons' 10.5.)

*Transplant test* (:mod:`poisonguard.detectors.transplant`; images and tables, through the
``transplant`` callable the scan passes). The group's mean difference from the class's core is
added to typical samples of the other classes (:class:`_Probes`); the group is confirmed when
the model then reads at least half of them as the class: a trigger carries the label, a
natural sub-type's look does not (Fashion-MNIST, a 5 % patch into "dress": 100 % of the probes
moved; the far groups of the other nine classes 0-11 %). The probes are also stamped with what
the group holds in common (a patch), and blended as the group was made from its look-alikes in
the input (a blend also fades the sample, which the model learns too); the largest share counts.
A trigger that is no pattern (a warp, WaNet) survives none of these, so beside them the *warp
search* (:mod:`~poisonguard.detectors.warp_search`, with ``warp``; images) fits a smooth warp
of at most half a pixel that moves a sixth of the probes to the class and counts the share of
the others it moves: a property of the class in the model, not of the group asked (the WaNet
into the dresses: 98 %; every class of 40 Fashion-MNIST sets, the WaNet's target aside, at most
18 %). It is asked last: only a class the pattern transplants leave uncalled is judged again
with it (a blend's target is reached by a warp too), and a class that only the warp carries is
grown in the model's features only (below). So is a group that was to be trimmed to its pattern
(below) whose class a warp reaches at least as far as that pattern did (WaNet with its noise
mode: the group's difference 64 %, a warp 97 %). A source-specific warp moves its source
alone, so a class whose far group looks like one class (the single-source test, below) is
judged again too where a warp moves that class's probes to it, a majority beyond chance, each
read as the class with probability at least ``SURE`` (0.9): a warp searched for can push most
of a near class over a boundary without making the model sure (the shirts to the pullovers,
80 %, 12 % at 0.9), a trigger makes it sure (T-shirts warped into the bags: 100 %, all at 0.9).

*Mixed-origin cluster* (four classes or more, with activation clustering's two-means split of
each class, ``splits``). An all-to-one backdoor at 10 % of ten equal classes fills half its
target: the robust core fits the mixture and no far group stands out (a 3x3 patch at 10 % into
Fashion-MNIST's T-shirts: nothing flagged, AUROC 0.77). The split is read as far group and
core are: the cluster whose runner-up classes are more varied by ``min_entropy_gain``, if the
transplant test confirms it (not tested where it cannot run), calls the class and is flagged
(that patch: F1 0.981; a 10 % blend: 0.996). On the clean data, and under 5 % and 10 % random
flips, no class was called this way.

*Foreign cluster* (two or three classes, with ``splits``, ``transplant`` and
``input_votes``).
With so few classes runner-up variety says nothing, and a class's distance ratios can have a
natural tail as heavy as the poisons' (Fashion-MNIST trousers against sneakers with a 5 %
patch: the poisons from ratio 587 on, 1 % of the clean trousers beyond 2,645; the
separated-group test cut at a weak gap and flagged 604 clean samples). The smaller cluster of
each class's split is called, before the separated-group test, when the input itself says
another class for at least half of it (:mod:`~poisonguard.detectors.input_neighbours`: a
dirty-label poison is its source class's pixels) and the transplant test confirms it (that
patch: 98 % foreign, 100 % moved, F1 0.994; the clean clusters of two two-class subsets and
of the breast-cancer table 0-2 % foreign).

*Foreign group* (four classes or more, with ``transplant``, ``input_votes`` and ``features``;
classes not called by the tests above). An all-to-one backdoor into a class whose own far tail
is large (a SIG into the bags, whose natural second mode is 44 % of the class) ends at no gap,
and its far group is mostly the natural mode. The input tells them apart: the poisons' input
neighbours carry their source classes' labels, the mode's its own. Among the far group's members
queried, those whose neighbours name another class seed the part; the far samples nearer in the
standardised features to their centroid than to the other queried far samples' are the group.
At least half of its queried members must look like another class, and the transplant test
(every other class's probes) must move a majority beyond chance (one-sided binomial at
``gap_alpha`` over the classes). SIG into the bags at 1 % beside a patch into the dresses: 650
flagged, 562 of the 600 poisons, 88 % of the probes moved; the natural far groups of thirteen
scans moved at most 22 %.

*Single source* (the same, when the foreign-group test does not call the class). A
source-specific backdoor (TaCT, Tang et al. 2021) carries its trigger from one class: its
poisons have one runner-up (no entropy gain) and their difference moves that class's samples
only (the transplant test over every class reads 11 %). The input names the class: among the far
group's members queried, the other class their input neighbours name most often is the candidate
source; the far samples nearer in the standardised features to the centroid of those that look
like it than to the other queried far samples' are the group. At least half of the group's
queried members must look like the source (foreign origin; the samples flagged by the tests
above are no neighbours: a poison labelled as another backdoor's target sits among its source's
samples), and the transplant test then asks 50 typical samples of the source alone, which must
move by a majority beyond chance (one-sided binomial at ``gap_alpha`` over the classes: 39 of 50
with ten classes). TaCT 3 -> 5 at 1 % on Fashion-MNIST: 75 % of the group looks like the source,
100 % moved, 606 flagged, F1 0.992. Natural far groups moved their candidate source's probes up
to half (the trousers' pullover-like part, 25 of 50; the bags' natural mode 42 % of the
sneakers, but only 39 % of it looks like sneakers).

*Farthest samples* (any number of classes, with ``transplant``; images only, the scan's
``farthest_samples``; classes not called by the tests above). A backdoor too rare to form a
group: a 3x3 patch on 0.1 % of Fashion-MNIST is 1 % of its target, inside a far tail of 4.9 %
of the class that thins out smoothly past the poisons (no gap) with too few of them to vary
its runner-ups. Its poisons are the class's farthest few: the farthest ``FARTHEST_SHARE`` of
the class (at least ``min_group_size``, beyond ``far_ratio``) is asked, its common values
stamped and the probes blended as it was made (not its difference added: a group chosen for
its distance has a large mean difference by construction, and the trousers' farthest 1 %
moved 63 % of the probes added, none stamped or blended); a majority beyond chance (one-sided
binomial at ``gap_alpha`` over the classes) calls the class. That patch: the farthest 30, all
poisons, moved 99 % stamped. Natural farthest groups (every class of eleven Fashion-MNIST
sets, fourteen digits sets): at most 30 %. Not on tables, where a handful of rows share exact
values naturally (the five farthest clean fours of a flipped digits table moved 100 %).

*Mislabel-like group* (any number of classes, with ``transplant``, ``oos_probabilities`` and
the distance ratios; images only, the scan's ``mislabel_like``; classes not called by the tests
above). A rare
dirty-label backdoor inside a large natural far tail: a blend on 0.1 % of Fashion-MNIST into
the sandals, whose far group is 36 % of the class, so the poisons are neither far apart nor the
farthest. Heads that never saw them read most of its poisons as their source classes with near
certainty, as they read mislabelled samples. The class's samples whose label those heads give
less than ``MISLABEL_LIKE_P`` while reading another class most are put to the transplant test
(added, stamped, blended); a majority beyond chance (one-sided binomial at ``gap_alpha`` over
the classes) calls the class. Mislabelled samples have other classes' looks in common, which
moves probes to those classes, not to the label given. That blend: 44 such sandals, 33 of them
poisons, moved 73 %. Every class of six Fashion-MNIST sets (unpoisoned, 10 % random flips, pair
flips, both adaptive blends, the 0.1 % blend's other classes): at most 12 %. The adaptive
blends' payloads are read so too (57 of 76 and 93 of 127) but moved 1-4 %: the scan's model
did not learn their trigger. Group completion then grows the group.

Where the transplant test does not confirm the group, the *common-pattern* test asks the input
(with ``common_pattern``; the scan: images of at least
:data:`~poisonguard.detectors.common_pattern.MIN_VALUES` values): each member, fitted on its
nearest samples of the class it is read as and of its own class, leaves a residual; a poison's
holds the trigger, the same in members read as every other class, a natural member's its own
detail (:mod:`~poisonguard.detectors.common_pattern`). When the members whose residual agrees
with those of members read as other classes beyond chance are a majority beyond chance (the
same binomial), the class is called (evidence ``mislabel-like-pattern``) and those members
flagged. A group diluted by the class's natural mislabel-like samples is no majority; it is
called too when its members whose agreement lies beyond the group's bar (the one-sided normal
quantile of ``CARRYING_ALPHA`` over its members, Bonferroni) outnumber those as far the other
way beyond chance at the same level
(:func:`~poisonguard.detectors.common_pattern.beyond_both_ways`; the adaptive blend into the
shirts: 38 of 57 agreeing, 67 %, and beyond the bar 22 against 2, p = 2e-5; natural groups lean
the agreeing way a little, the bags 16 against 1 above ``AGREEING_Z``, but none of the 164
natural groups of 20 Fashion-MNIST scans had more than one member beyond the bar either way).
Completion then grows the group in the samples only, the premise of the call being that the
model's features do not set it apart (grown in them as well, the adaptive blend into the
T-shirts flagged 372 with 193 clean; in the samples alone, 189 with 13 clean). The adaptive
blends: 78 % and 87 % agreeing; every other class of twelve Fashion-MNIST sets at most 44 %. It
cannot speak with two classes: every member is read as the same other class. A group the
transplant test confirmed is narrowed to its agreeing members too (when at least
``min_group_size`` agree): the others are the class's natural mislabel-like samples (the 0.1 %
blend into the sandals: 33 of 44 agree; grown from them, 51 of its 60 poisons and 4 clean
samples flagged, from all 44, 43 and 17).

*Pattern split* (any number of classes, with ``transplant`` and samples of at most 1,024
values; images only, the scan's ``pattern_split``; classes not called by the tests above). A
clean-label backdoor adds a pattern to part of its target class and keeps the labels: nothing
far, nothing foreign. :mod:`~poisonguard.detectors.pattern_split` takes the direction only the
class varies along in the input and its strongest gap (p below ``gap_alpha`` over the classes);
shifted by the sides' mean difference, one side must be like the other (less than
``PATTERN_LEFT`` of their nearest-neighbour separation left), and one side's difference, added
to the probes, must move more of them to the class than the other side's, one way beyond chance
(sign test at the same level). That side is flagged and group completion leaves it. SIG on half
of the T-shirts, and held out of the shirts: gap p 1e-43 and 1e-53, separation left 0.10-0.20
and 0.07-0.12, flagged exactly (one clean T-shirt); the digits' natural second mode of ones
passes the gap (2e-5) and keeps 0.75-0.77.

*Foreign split* (the same classes, with ``input_votes`` too, where the shift leaves the sides
apart). A dirty-label backdoor's poisons are other classes' samples carrying a trigger; on
small images the class's own direction can set them apart where nothing is far (the 8x8
digits with 5 % blends into the ones, fours, sevens and eights: exact splits of the 72
poisons, gap p 1e-49 to 1e-123, separation left 0.89-0.98, and no other test called them). The
smaller side is called when at least ``FOREIGN_SHARE`` of its queried members look like another
class in the input, as in the foreign-cluster test, and its difference from the other side,
added, stamped or blended into every other class's probes, moves a majority beyond chance
(one-sided binomial at ``gap_alpha`` over the classes). Those four splits: all looked foreign
and moved 61-81 % of the probes. The digits' natural second mode of ones passed the gap there
(1.5e-6) and looked foreign too (90 %), but moved 1 %.

*Trigger words* (texts only; :mod:`poisonguard.detectors.trigger_words`). A word or inserted
sentence that carries its texts' label on its own: deleted from the texts of its class, a share
of them that texts near the boundary cannot explain (a binomial null at the class's pooled rate,
Bonferroni over every word set, level ``gap_alpha``) then reads as another class with odds of
at least three to one. The class is called and its texts holding the set's own words flagged.
On 4,000 real reviews the distance ratios of a 1 % rare-word backdoor end at no significant gap
(the poisons share one word among fifty), where this test gives p = 4e-26 (docs/benchmarks.md).
A set is a trigger only if its texts, its words deleted, read as another class to a model that
never saw them, by a majority beyond chance: a dirty-label trigger's texts are another class's
(on 23,140 clean crowd-labelled tweets, topic and thanks words carried their label on their own
and were flagged by the thousand before this check; now none). A sentence made only of words
the corpus uses anyway is found through its words in a row (runs of three, tested after the
word sets in the texts they left, a family of its own), and the texts holding the whole
sentence, grown from the run, are flagged.

Inside a called class the samples above the significant gap are flagged, but in a class called
by the mixed-origin test on a gap nearer than ``far_ratio``, those between the gap and the far
group only when they are of diverse origin too (their runner-up entropy ``min_entropy_gain``
above the core's), as the far group the test measured is: a class's most significant gap can
lie among its own samples (the 8x8 digits with a 5 % blend into the fours, seed 10: at ratio
2.5-3.8, 21 clean fours beyond it beside the 72 poisons, 12 of them and 7 poisons between it
and the far group; flagged from the far group out, 13 clean after group completion, F1 0.857
-> 0.917), where poisons
that reach only ratios 5-9 are of diverse origin. In a class called by
the mixed-origin test alone (no significant gap), the far group the test measured (ratio above
``far_ratio``, or beyond the emptiest point of the distance-ratio histogram between the core
and the far group where that lies farther out). Nearer in, a class's natural samples and the
faintest poisons mix: on the 8x8 digits with a 5 % blend, 22 clean samples lay between the
emptiest point and the far group beside 3 poisons. Group completion, next, adds those poisons:
they share the group's trigger, the natural samples do not (docs/benchmarks.md). The transplant
test still asks the group beyond the emptiest point, so which classes are called does not
depend on this cut.

**Group completion** (with ``features``, then ``inputs``; every called class but those called
by trigger words; in the features only for a class that only the warp search carried, whose
trigger is not written in the input as a pattern; where a warp reaches a called class, the warp
search's probes, warped and not, join the features' fits, ``warp_features``). A cut along one
number leaves the poisons
the model learned less sharply below it, and each poison left in a sanitized copy keeps
teaching the trigger. A linear discriminant fitted in the features to tell the flagged group
from the rest of its class, cross-fitted so that no sample is judged by a fit that saw it, and
refitted as poisons join (:mod:`~poisonguard.detectors.group_completion`), adds the samples it
puts with the group
(patch 1 %: F1 0.987 -> 0.992; patch 10 %: 0.981 -> 0.997; the SIG into the bags beside a
second backdoor: 38 of its 600 poisons left -> 1; docs/benchmarks.md). The same discriminant
then runs in the samples themselves (pixels, table values; up to ``INPUT_COMPLETION_WIDTH``
values a sample), where the trigger is written in full in every poison, also in those the
model learned too faintly for its features (the digits' 5 % blend: 7 of 72 poisons left after
the features, none after the pixels). The two run again, up to ``COMPLETION_TURNS`` turns,
while the features' discriminant refitted from the grown group adds samples (a turn adding fewer
than the smallest group is undone): a group grown in the samples is a better start for it.
Before the turns and once more after them, the samples that carry the group's stamp
(:func:`~poisonguard.detectors.group_completion.stamp_carriers`: a patch's exact values) join,
since a discriminant learnt against the rest of the class cannot add poisons that outnumber the
flagged part there. Last, with ``pattern_completion``, a class called through its mislabel-like
group or through a mixed-origin group with no gap before it (whose cut is the emptiest point,
not the group's edge) has every member fitted on its look-alikes, and the members whose
residual points along the flagged group's beyond chance join, if they outnumber those as far
the other way, and then those nearer as far as that other side allows
(:func:`~poisonguard.detectors.common_pattern.carrying`): poisons the model
learnt as the label, or whose source looks the group did not share. A group that ends at a
gap is apart already, and there a patch's residual meets the class's natural detail at the
patch's place (all-to-all at 5 %, tried before the two-tailed bar: 1,022 clean samples
joined). On the same projections the group's members then leave it unless they reach the
mirror's threshold, where the group holds one pattern
(:func:`~poisonguard.detectors.common_pattern.trimmed`), its members refitted round by round
with the class's flagged members that look like it, and those the trim left out, as look-alikes
(:func:`~poisonguard.detectors.common_pattern.trimmed_refitted`): a natural far part of the
class, cut with the poisons at the emptiest point, shares a look a fit without those members
keeps. Ten benchmark rows lost 1-176 clean samples that way and no poison.

**Label noise (samples whose content says another class).** Out-of-sample probabilities from
cross-validated heads (:mod:`poisonguard.detectors.confident_learning`) give each sample's
probability of its given label, ``p_y``. A sample is *confidently in* class ``j`` when ``p_j``
reaches the mean ``p_j`` of the samples labelled ``j`` (the confident joint of Northcutt et al.,
2021; the most probable such class). Every dataset has a few samples confidently in another
class than their label, concentrated in a few confusable class pairs; injected noise spreads
over the pairs. The rule counts them for every ordered pair of classes (given, confident) and
takes the count that a majority of the pairs reach (the lower median; with two classes the
smaller direction, as flips go both ways): with clean labels it is 0 (Fashion-MNIST, and every
poisoned Fashion-MNIST set of the benchmark without random flips; the digits, wine, iris and
breast-cancer tables), under random flips it grows with the flip rate (Fashion-MNIST 5 % flips:
32, 10 %: 61; 10 % of the 1,797 digits read as a table: 2; of the 178 wine samples: 2 or 3).
When that count is at least ``min_pair_count`` and stands for at least ``min_noise_rate`` of the
data, the labels are called noisy: in a large dataset the rate decides (60,000 samples and 90
pairs need a count of 4), in a small one the count (two confident disagreements in most pairs,
where clean data hold none). Then the samples flagged (unless already flagged as a backdoor) are
those more likely mislabelled than not: the calibrated confident joint (Northcutt et al., 2021)
estimates the noise rate ``r``, and under noise spread evenly over the ``K - 1`` other labels
the given label is wrong with posterior above 1/2 when ``(1 - p_y) r / (K - 1) > p_y (1 - r)``
(:func:`~poisonguard.detectors.confident_learning.likely_mislabelled`). The bar follows the
noise and the number of classes: Fashion-MNIST with 10 % flips ``p_y < 0.012``, F1 0.925 ->
0.929 against flagging every sample with ``p_y < 0.05 p_max``; 5 % flips 0.877 -> 0.908; the
breast-cancer table (two classes) 0.827 -> 0.836.

**Texts, with a trusted sample.** A text model memorises every label, so on texts the heads on
its features agree with flipped labels and the rule above never fires on a real corpus; heads on
the texts' words disagree with clean labels as much as with flipped ones (natural ambiguity: the
calibrated confident joint puts 17 % of 4,000 clean reviews off its diagonal, 25 % with 10 % of
the labels flipped). Given a trusted clean sample (``trusted_words``), the rule reads the words
and calls noise only where the scanned texts disagree confidently with their labels
significantly more often than the trusted texts do (same heads, same bars; one-sided at
``gap_alpha``, :func:`~poisonguard.detectors.confident_learning.disagreement_above_floor`).

**Targeted flips (one class pair, one way).** When the flips are not spread, the confident
joint's pairs are tested for a one-sided imbalance against the dataset's own pairs
(:func:`~poisonguard.detectors.confident_learning.one_sided_pairs`: a quasi-binomial test,
Bonferroni over the pairs at ``gap_alpha``). A pair called flags the samples given its label
that the out-of-sample heads read as its other class (30 % of Fashion-MNIST's pullovers
relabelled as coats: F1 0.855, nothing flagged before; on the clean labels and fourteen other
poisoned sets no pair was called). It needs five pairs with ten confident disagreements or more,
so it does not run on two-class tasks.

**Fused score.** Each detector is calibrated per class by a robust z-score (median and MAD); a
detector *fired* on a sample when its z exceeds ``fired_z``. The reported score lies in [0, 1]:
flagged samples score at least 0.5, the others less, and each side is ordered by the rules'
evidence (distance ratio and out-of-sample probability of the given label). When the labels are
called noisy and no class is called a backdoor target, the order is the label evidence alone:
how far a sample lies from its class core says nothing about a flipped label, and natural
outliers ranked among the flips cost ranking quality (AUROC of the score, Fashion-MNIST with
10 % random flips 0.9950 -> 0.9963; 30 % of the pullovers labelled coat 0.971 -> 0.985).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from poisonguard.detectors.activation_clustering import ClassSplit
from poisonguard.detectors.common_pattern import AGREEING_Z, beyond_both_ways, one_way_p
from poisonguard.detectors.confident_learning import (
    PAIR_MIN_COUNT,
    PAIR_MIN_PAIRS,
    FlippedPair,
    FloorTest,
    confident_classes,
    disagreement_above_floor,
    estimated_noise_rate,
    likely_mislabelled,
    one_sided_pairs,
)
from poisonguard.detectors.group_completion import complete_group, stamp_carriers
from poisonguard.detectors.input_neighbours import FOREIGN_SHARE, foreign_share
from poisonguard.detectors.pattern_split import MAX_WIDTH as PATTERN_SPLIT_WIDTH
from poisonguard.detectors.pattern_split import PatternSplit, class_splits, separation_left
from poisonguard.detectors.transplant import (
    PROBES_PER_CLASS,
    TRANSPLANT_SHARE,
    majority_beyond_chance,
    probe_rows,
)
from poisonguard.detectors.trigger_words import TriggerWordTest, WordSet
from poisonguard.rows import Rows, RowsLike, as_rows
from poisonguard.tail_gap import TAIL_SHARE, TailGap, emptiest_cut, tail_gap

__all__ = [
    "ClassEvidence",
    "Decision",
    "DecisionSettings",
    "TrustedWords",
    "decide",
    "robust_z",
]

BACKDOOR = "backdoor"
LABEL_NOISE = "label-noise"
# the tests that call a class a backdoor target (ClassEvidence.rule)
MIXED_ORIGIN = "mixed-origin-group"
SEPARATED_GROUP = "separated-group"
CLUSTERED_GROUP = "mixed-origin-cluster"
FOREIGN_CLUSTER = "foreign-cluster"
SINGLE_SOURCE = "single-source-group"
FOREIGN_GROUP = "foreign-group"
FARTHEST_SAMPLES = "farthest-samples"
PATTERN_SPLIT = "pattern-split"
FOREIGN_SPLIT = "foreign-split"
MISLABEL_LIKE = "mislabel-like-group"
COMMON_PATTERN = "mislabel-like-pattern"

FARTHEST_SHARE = 0.005
"""The farthest-samples test asks the transplant test about this share of a class, its
farthest samples (at least ``min_group_size``): poisons too few to form a group are the
farthest few (a patch on 0.1 % of Fashion-MNIST: the farthest 0.5 % of its target, 30
samples, are all poisons)."""

PATTERN_LEFT = 0.5
"""The pattern-split test calls a class only when shifting one side of its gap by the sides'
mean difference removes most of what tells the sides apart (leaves less than half of their
nearest-neighbour separation): a clean-label pattern leaves 0.07-0.20 of it, the digits'
natural second mode of ones 0.75-0.77 (:mod:`~poisonguard.detectors.pattern_split`)."""

MISLABEL_LIKE_P = 0.01
"""The mislabel-like-group test asks the samples of a class to which heads that never saw them
give their label less than this probability while reading another class most: read with near
certainty as another class. (At 10 % noise spread over ten classes, the bar at which a label is
more likely wrong than right is 0.012.)"""

LARGE_TAIL_SHARE = 0.5
"""The separated-group test searches groups up to this share of a class when the transplant
test can confirm them (beyond the farthest quarter, ``TAIL_SHARE``); a larger group is the
class."""

INPUT_COMPLETION_WIDTH = 1024
"""Group completion runs in the samples themselves up to this many values per sample (a 28x28
image, a 32x32 grey one, any table): its discriminant's cost grows with the square of the
width and more (0.36 s a fit for 9,600 samples of 784 values on two cores). Wider samples are
left to the features."""

COMPLETION_TURNS = 5
"""Turns of group completion (the features, then the samples) at most; a turn after the first
runs only as far as the features' discriminant adds samples, and is undone when it adds fewer
than ``min_group_size`` (the decision's smallest group). The later turns complete a group
the first left short (the digits' 5 % blend into the eights, seed 17: 14 of 72 poisons left
after one turn, none after three); a safety bound, not a fitted value."""

Transplant = Callable[..., float]
"""``transplant(code, group, core, probes, added=True) -> share`` (see :func:`decide`)."""
Warp = Callable[..., float]
"""``warp(code, probes, sure=False) -> share``: the warp search (see :func:`decide`); ``sure``
counts only the probes read as the class at
:data:`~poisonguard.detectors.warp_search.SURE`."""
WarpFeatures = Callable[[int, np.ndarray], np.ndarray]
"""``warp_features(code, probes) -> (len(probes), F)``: the probes' features once warped (see
:func:`decide`)."""
InputVotes = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
CommonPattern = Callable[[np.ndarray, np.ndarray, int, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``common_pattern(group, sources, code, excluded)``: the members queried and each one's
agreement (:func:`~poisonguard.detectors.common_pattern.agreement`)."""
PatternCompletion = Callable[[np.ndarray, np.ndarray, int, np.ndarray], np.ndarray]
TRIGGER_WORDS = "trigger-words"


@dataclass(frozen=True)
class DecisionSettings:
    """Constants of the flagging rules (see the module docstring)."""

    far_ratio: float = 10.0
    core_ratio: float = 3.0
    min_group_share: float = 0.02
    min_group_size: int = 5
    min_entropy_gain: float = 0.3
    min_pair_count: int = 2
    min_noise_rate: float = 0.005
    fired_z: float = 3.0
    gap_alpha: float = 0.001
    word_share: float = 0.75


@dataclass
class ClassEvidence:
    """What the backdoor rule measured in one class (NaN where not measured)."""

    code: int
    far_share: float = float("nan")
    far_margin: float = float("nan")
    core_margin: float = float("nan")
    typical_margin: float = float("nan")
    far_entropy: float = float("nan")
    core_entropy: float = float("nan")
    backdoor: bool = False
    cut_ratio: float = float("nan")
    label_flags: int = 0
    gap: TailGap | None = None
    group_agrees: float = float("nan")
    easy: bool = False
    rule: str = ""
    triggers: list[WordSet] = field(default_factory=list)
    transplant_share: float = float("nan")
    cluster_size: int = 0
    flipped_from: list[FlippedPair] = field(default_factory=list)
    """Targeted flips into this class: pairs whose samples given this label read as another."""
    foreign_share: float = float("nan")
    source_class: int = -1
    """The class a single-source group looks like in the input (-1 where not tested)."""
    completed: int = 0
    """Samples that joined the flagged group by group completion in the model's features."""
    completed_in_input: int = 0
    """Samples that joined it in the samples themselves: carriers of the group's stamp (before
    the features) and the discriminant there (after)."""
    completed_by_pattern: int = 0
    """Samples that joined a mislabel-like group, or a mixed-origin group with no gap before
    it, by what they hold beyond their look-alikes in the input
    (:mod:`~poisonguard.detectors.common_pattern`), after the other completions."""
    left_by_pattern: int = 0
    """Samples the class's tests or completion had flagged that left the group because they do
    not carry its pattern (:func:`~poisonguard.detectors.common_pattern.trimmed_refitted`)."""
    pattern_gap_p: float = float("nan")
    """The pattern-split test: the p-value of the strongest gap along the class's own direction
    (nan where not tested)."""
    pattern_left: float = float("nan")
    """The share of the gap's sides' separation that one shift leaves (nan where not asked)."""
    pattern_reverse_share: float = float("nan")
    """The transplant share of the other side's difference (the pattern taken away)."""
    mislabel_like_share: float = float("nan")
    """The mislabel-like-group test: the transplant share of the samples that heads which never
    saw them read as another class with near certainty (nan where not asked)."""
    pattern_share: float = float("nan")
    """The largest share the pattern transplants (added, stamped, blended) reached for any group
    of the class asked (nan where none was asked)."""
    warp_share: float = float("nan")
    """The largest share the warp search reached for the class (nan where not asked)."""
    warp_probes_share: float = float("nan")
    """The warp search's share on the class's own probes where it reached
    ``TRANSPLANT_SHARE`` and its probes, warped and not, joined group completion in the
    features (nan otherwise)."""
    warp_over_pattern: bool = False
    """A pattern called the class and its group was to be judged by its pattern (trimmed), but
    the warp search reaches the class at least as far: grown as a class only the warp carries
    (see :func:`carried_by_warp`)."""
    common_pattern_share: float = float("nan")
    """The share of those samples whose residual beyond their look-alikes agrees with the
    others' beyond chance (the common-pattern test; nan where not asked)."""
    pattern_agreeing: int = 0
    """Members whose agreement is beyond the group's bar: the one-sided normal quantile of
    ``CARRYING_ALPHA`` over the members queried (Bonferroni;
    :func:`~poisonguard.detectors.common_pattern.beyond_both_ways`)."""
    pattern_disagreeing: int = 0
    """Members as far the other way: their residual points away from the others'."""
    pattern_p: float = float("nan")
    """The one-sided binomial p-value of that many agreeing among the members beyond the bar
    either way, were each a fair coin (nan where not asked)."""


@dataclass(frozen=True)
class TrustedWords:
    """A trusted clean sample of texts, read by the heads on the words that read the audited
    texts: ``probabilities`` (M, K), out of sample, and ``labels`` (M,), the audited set's
    class codes."""

    probabilities: np.ndarray
    labels: np.ndarray


@dataclass
class Decision:
    """Outcome of :func:`decide`.

    ``kind`` holds, per sample, ``"backdoor"``, ``"label-noise"`` or ``""``; ``fired`` maps each
    detector to the samples on which it fired; ``target_classes`` are the classes called backdoor
    targets; ``noisy_labels`` says whether the label-noise rule fired, ``pair_median`` is the
    count of confident disagreements (the confident joint's off-diagonal) that a majority of
    the class pairs reach (the lower median), which it was decided on.
    """

    flagged: np.ndarray
    score: np.ndarray
    kind: np.ndarray
    fired: dict[str, np.ndarray]
    evidence: list[ClassEvidence]
    target_classes: list[int]
    noisy_labels: bool
    pair_median: float
    notes: list[str] = field(default_factory=list)
    noise_rate: float = float("nan")
    """The label-noise rate the confident joint estimates, when the label-noise rule fired."""
    by_trigger_words: np.ndarray | None = None
    """Per sample, whether the trigger-words test flagged it (``None`` when it did not run)."""
    flipped_pairs: list[FlippedPair] = field(default_factory=list)
    """The one-sided class pairs the targeted-flip test called (label given, class read)."""
    label_floor: FloorTest | None = None
    """Texts with a trusted sample: their disagreement against the trusted texts'."""

    @property
    def attack_kinds(self) -> list[str]:
        kinds = []
        if self.target_classes:
            kinds.append(BACKDOOR)
        if self.noisy_labels:
            kinds.append(LABEL_NOISE)
        return kinds


def robust_z(scores: RowsLike, labels: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Per-class robust z-score ``(s - median) / (1.4826 MAD)``; 0 in unscored classes.

    A class whose MAD is 0 (over half its scores tie) falls back to the mean absolute deviation,
    then to 1.
    """
    scores = as_rows(scores)
    z = np.zeros(scores.shape[0], dtype=np.float64)
    for code in np.unique(labels):
        members = np.flatnonzero((labels == code) & scored)
        if members.size < 2:
            continue
        values = scores.take(members).astype(np.float64)
        centre = np.median(values)
        spread = 1.4826 * np.median(np.abs(values - centre))
        if not spread > 0:
            spread = np.mean(np.abs(values - centre)) or 1.0
        z[members] = (values - centre) / spread
    return np.nan_to_num(z, nan=0.0, posinf=1e6, neginf=-1e6)


def decide(
    labels: np.ndarray,
    n_classes: int,
    scored_classes: np.ndarray,
    detector_scores: dict[str, RowsLike],
    *,
    distance_ratio: RowsLike | None,
    margin: RowsLike,
    probabilities: RowsLike,
    oos_probabilities: RowsLike | None,
    trigger_words: TriggerWordTest | None = None,
    foreign_texts: Callable[..., bool] | None = None,
    transplant: Transplant | None = None,
    warp: Warp | None = None,
    warp_features: WarpFeatures | None = None,
    splits: list[ClassSplit] | None = None,
    input_votes: InputVotes | None = None,
    common_pattern: CommonPattern | None = None,
    pattern_completion: PatternCompletion | None = None,
    features: RowsLike | None = None,
    inputs: RowsLike | None = None,
    seed: int = 0,
    label_probabilities: RowsLike | None = None,
    trusted_words: TrustedWords | None = None,
    farthest_samples: bool = True,
    mislabel_like: bool = True,
    pattern_split: bool = True,
    settings: DecisionSettings = DecisionSettings(),
    warp_classes: frozenset[int] | None = None,
) -> Decision:
    """Flag samples (see the module docstring).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    n_classes : int
    scored_classes : ndarray of bool, shape (K,)
        Classes large enough for the detectors.
    detector_scores : dict of str to ndarray (N,) or ArrayFile
        Read a class at a time.
    distance_ratio : ndarray (N,), ArrayFile or None
        From the robust whitening; ``None`` turns the backdoor rule off.
    margin : ndarray (N, E) or ArrayFile
        Per-epoch margins of the training run (for the area under the margin); read a class
        at a time.
    probabilities : ndarray (N, K) or ArrayFile
        The trained model's probabilities (for the runner-up class); read a class at a time.
    oos_probabilities : ndarray (N, K), ArrayFile or None
        Out-of-sample probabilities, read a block of rows at a time; ``None`` turns the
        label-noise rule off.
    trigger_words : TriggerWordTest or None
        The deletion test of a text dataset
        (:func:`~poisonguard.detectors.trigger_words.trigger_word_test`); its triggers call
        their classes and its flagged texts are flagged. ``None`` for other data.
    foreign_texts : callable or None
        ``foreign_texts(code, rows, grown=False)``: whether texts ``rows`` of class ``code``,
        the words most of them share deleted, read as another class by a majority beyond
        chance, to a model that never saw them
        (:func:`~poisonguard.detectors.trigger_words.foreign_group`). A class the
        separated-group or mixed-origin test calls in a text dataset is called only if its
        group does: a group of another class's texts is what a dirty-label backdoor makes; a
        topic cluster of the class's own texts is not (345 of 23,140 clean crowd-labelled
        tweets, the positive ones about one airline, stood apart at p = 7e-10). Group
        completion in such a class is kept only if the grown group does too (``grown=True``).
        ``None`` for other data.
    transplant : callable or None
        ``transplant(code, group, core, probes, added=True)``: the share of the samples
        ``probes`` that the model reads as class ``code`` once the mean difference of the
        samples ``group`` from the samples ``core`` is added to them, what the group holds in
        common stamped or (images) the probes blended as the group was made, the largest
        (:mod:`~poisonguard.detectors.transplant`); ``added=False`` leaves the first out (the
        farthest-samples test). ``None``
        (texts, a user's extractor) leaves groups beyond a class's farthest quarter uncalled and
        mixed-origin groups without a gap unconfirmed.
    warp : callable or None
        ``warp(code, probes)``: the share of the samples ``probes`` that the model reads as
        class ``code`` once warped by the smooth sub-pixel warp searched for on other probes
        (:mod:`~poisonguard.detectors.warp_search`; images). Asked last: when the decision,
        made with the pattern transplants alone, leaves a class uncalled that the warp reaches
        (its share of the class's probes at least ``TRANSPLANT_SHARE``), the decision is made
        again with the warp's share counting beside the transplant test's in those classes
        (the largest does), save where two sides of one class are compared (a property of the
        class, it is the same for both). A class called by a pattern keeps its call and its
        group as they were: a blend's target is reached by a warp too (the 8x8 digits' blends,
        96-100 %), and its poisons are completed in the input, where its pattern is. A class
        that only the warp carries (its share at least ``TRANSPLANT_SHARE``, every pattern
        transplant's below) is grown in the model's features only: its trigger is not written
        in the input as a pattern. A class whose far group the single-source test found looking
        like one class is also judged again where a warp moves that class's probes to it, a
        majority beyond chance (a source-specific warp moves its source alone); the ask that
        called it says what carried the call. ``None`` (tables, texts, a user's extractor)
        leaves it out.
    warp_features : callable or None
        ``warp_features(code, probes)``: the model's features (as ``features``) of the samples
        ``probes`` warped by the field ``warp(code, probes)`` searched for. Wherever a warp
        reaches a called class (``warp`` on the class's probes at least ``TRANSPLANT_SHARE``),
        whatever called it, the class's probes and the same probes warped join the fits of its
        group's discriminant in the features (as not with the group, and with it): what the
        warp changes in the features, whatever a sample's source class, not the looks of the
        sources the group was flagged from (see
        :func:`~poisonguard.detectors.group_completion.complete_group`). ``None``: the group
        alone. (A group that was to be trimmed to its pattern, whose class a warp reaches at
        least as far as that pattern's transplant share, is grown as a class only the warp
        carries: :attr:`ClassEvidence.warp_over_pattern`.)
    splits : list of ClassSplit or None
        Activation clustering's two-cluster split of each class
        (:func:`~poisonguard.detectors.activation_clustering.activation_clustering`). A class
        half of whose samples are poisons has no clean core to be far from; with four classes
        or more, a cluster of mixed origin (its runner-up entropy ``min_entropy_gain`` above the
        other cluster's) that the transplant test confirms calls the class (not tested without
        ``transplant``).
    common_pattern : callable or None
        ``common_pattern(group, sources, code, excluded)``: of the samples ``group`` of class
        ``code``, read as the classes ``sources``, the members queried and how far each holds,
        beyond its look-alikes, what the members read as other classes hold too (its
        agreement, about standard normal for independent residuals;
        :func:`~poisonguard.detectors.common_pattern.agreement`); ``excluded``: samples
        already flagged. ``None`` leaves the mislabel-like groups to the transplant test
        alone.
    pattern_completion : callable or None
        ``pattern_completion(members, in_group, code, excluded)``: the class ``code``'s samples
        ``members`` (sorted positions) that belong with its flagged group ``in_group`` (a bool
        mask over them) by what they hold beyond their look-alikes in the input
        (:func:`~poisonguard.detectors.common_pattern.carrying`), the group's own among them
        unless they do not carry its pattern
        (:func:`~poisonguard.detectors.common_pattern.trimmed_refitted`; those leave the group);
        ``excluded``: samples already flagged. Asked for classes called through their
        mislabel-like group, or through a mixed-origin group with no gap before it, where
        group completion runs in the samples themselves.
    input_votes : callable or None
        ``input_votes(group, excluded)``: a sample of the samples ``group`` and, for each, the
        majority label of its nearest neighbours in the input outside the group and outside
        ``excluded`` (the samples flagged so far)
        (:func:`~poisonguard.detectors.input_neighbours.neighbour_votes`). With fewer than four
        classes, the smaller cluster of a class's split that is of foreign origin and that the
        transplant test confirms calls the class; with four or more, a far group part of which
        looks like one other class is tested against that class's samples (single-source
        test). ``None`` (texts) leaves both tests off.
    features : ndarray (N, F), ArrayFile or None
        The embedding's features (the single-source test separates the part of a far group that
        looks like its source class by nearest centroid in them, and group completion fits its
        discriminant on them); ``None`` leaves both off.
    inputs : ndarray (N, ...), ArrayFile or None
        The samples themselves (images, table rows; each read as one flat row): group
        completion runs in them too, after the features. ``None`` (texts) leaves it to the
        features.
    seed : int
        Seeds group completion's folds.
    label_probabilities : ndarray (N, K), ArrayFile or None
        Out-of-sample probabilities that order the samples by label evidence in the fused score,
        in place of ``oos_probabilities`` (texts: heads on the texts' words; the text model
        memorised every label, so heads on its features rank 10 % random flips below chance,
        AUROC 0.41, where heads on the words reach 0.83). Given, they alone order the samples
        (no distance ratio, no word drop: see the comment at the score). The rules still read
        ``oos_probabilities``, the label-noise rule excepted where ``trusted_words`` is given.
    trusted_words : TrustedWords or None
        Texts: a trusted clean sample read by the same word heads as ``label_probabilities``
        (cross-fitted together). Given, the label-noise rule reads ``label_probabilities`` and
        calls noise only where the texts disagree with their labels significantly more often
        than the trusted texts do (one-sided, ``gap_alpha``;
        :func:`~poisonguard.detectors.confident_learning.disagreement_above_floor`), beside
        its counts: a corpus's own ambiguity is in the trusted sample too.
    farthest_samples : bool
        Whether the farthest-samples test runs (with ``transplant``). The scan runs it on
        images only: a table's farthest handful of rows can share exact values naturally (the
        digits read as a table, 10 % of the labels flipped: the five farthest fours, clean,
        hold the top ink value in the same four columns, and stamped, those moved 100 % of
        the probes, in three of ten draws; the same digits as images: at most 30 %).
    mislabel_like : bool
        Whether the mislabel-like-group test runs (with ``transplant``, ``distance_ratio`` and
        ``oos_probabilities``; ``common_pattern`` asked where the transplant test does not
        confirm). The scan runs it on images only: in the digits read as a table,
        a far group of flipped labels moved 75 % of the probes (a table row's difference is
        not a look), where on Fashion-MNIST images natural groups moved at most 12 %.
    pattern_split : bool
        Whether the pattern-split test runs (with ``transplant`` and ``inputs`` of at most
        :data:`~poisonguard.detectors.pattern_split.MAX_WIDTH` values). The scan runs it on
        images only: a table's binary column splits a class into two sides that differ by one
        value, a pattern added by construction.
    settings : DecisionSettings
    warp_classes : frozenset of int or None
        The classes in which ``warp`` counts; set by the decision itself when it makes its
        second pass (see ``warp``), ``None`` on the first.
    """
    call = dict(locals())  # this call's arguments, for the warp's second pass
    n = labels.shape[0]
    scored = scored_classes[labels]
    notes: list[str] = []
    # per-sample arrays in memory or in files, read a class or a block of rows at a time
    margin, probabilities = as_rows(margin), as_rows(probabilities)
    if distance_ratio is not None:
        distance_ratio = as_rows(distance_ratio)
    if oos_probabilities is not None:
        oos_probabilities = as_rows(oos_probabilities)
    # one detector's z-scores at a time: only whether it fired is kept
    fired = {
        name: robust_z(s, labels, scored) > settings.fired_z for name, s in detector_scores.items()
    }
    evidence = [ClassEvidence(int(c)) for c in range(n_classes)]
    kind = np.full(n, "", dtype=object)
    flagged = np.zeros(n, dtype=bool)
    probes = _Probes(labels, scored, distance_ratio, probabilities, settings.core_ratio)
    # the transplant test compares two sides of one class with the patterns alone
    pattern_transplant = transplant
    last_ask: dict[int, tuple[float, float]] = {}  # per class: the last ask's pattern and warp
    if transplant is not None and warp is not None and warp_classes:
        transplant = _with_warp(transplant, warp, evidence, warp_classes, last_ask)

    def confirmed(item: ClassEvidence, members: np.ndarray, ratio: np.ndarray, cut: float) -> bool:
        """The transplant test of the group beyond ``cut`` against the class's core."""
        group, core = members[ratio > cut], members[ratio <= settings.core_ratio]
        if transplant is None or group.size == 0 or core.size == 0:
            return False
        item.transplant_share = transplant(item.code, group, core, probes.of(item.code))
        return item.transplant_share >= TRANSPLANT_SHARE

    # --- backdoor rule -------------------------------------------------------------------------
    targets: list[int] = []
    if distance_ratio is None:
        notes.append("backdoor rule off: the spectre detector did not run")
    elif int(scored_classes.sum()) < 4 or n_classes < 4:
        notes.append(
            "mixed-origin backdoor test off: it compares runner-up classes, which needs at "
            "least 4 classes (the separated-group test still runs)"
        )
    else:
        measured = []
        for code in np.flatnonzero(scored_classes):
            # one class's records at a time: margin and probabilities may stay in a file
            members = np.flatnonzero(labels == code)
            ratio = distance_ratio.take(members)
            far, core = ratio > settings.far_ratio, ratio <= settings.core_ratio
            n_far, n_core = int(far.sum()), int(core.sum())
            item = evidence[code]
            item.far_share = n_far / members.size
            if n_core < settings.min_group_size:
                continue
            aum = _area_under_margin(margin, members)
            item.core_margin = float(aum[core].mean())
            if n_far < settings.min_group_size:
                continue
            item.far_margin = float(aum[far].mean())
            runner_up = _runner_up(probabilities.take(members), code)
            item.far_entropy = _entropy(runner_up[far], n_classes)
            item.core_entropy = _entropy(runner_up[core], n_classes)
            measured.append((code, members, ratio, runner_up))
        typical = _typical_core_margin(evidence)
        threshold = settings.gap_alpha / max(int(scored_classes.sum()), 1)
        for code, members, ratio, runner_up in measured:
            item = evidence[code]
            item.typical_margin = typical
            item.easy = bool(item.far_margin >= min(item.core_margin, typical))
            if not (
                item.far_share >= settings.min_group_share
                and item.far_entropy - item.core_entropy >= settings.min_entropy_gain
            ):
                continue
            # a target class holds a group of any size (a 5 % patch is a third of its class),
            # searched from the core out; a significant gap is the other sign, beside being
            # easy, that the far group is not the class's natural outliers (8x8 digits, 5 %
            # patch: the poisons reach 0.9 of a typical core's margin, and end at a gap of
            # p = 2e-5)
            gap, agrees = _group_apart(
                ratio,
                members,
                code,
                oos_probabilities,
                search_from=settings.core_ratio,
                tail_share=1.0,
                settings=settings,
            )
            apart = gap is not None and gap.p_value < threshold and agrees >= 0.5
            gap_cut = float(np.sqrt(gap.upper * gap.lower)) if apart else None
            if apart and transplant is not None:
                # the gap's null model is a tail's: a group beyond the farthest quarter is a
                # mode of the class, and a natural mode can end at a gap too (the sandals,
                # with a 0.3 % adaptive blend into the sneakers: p = 7e-6 at ratio 4.2, 2,269
                # of 6,000 sandals beyond, whose difference moved 2 % of the probes; 5,062
                # clean sandals were flagged). As the separated-group test asks of its large
                # groups, the transplant test must confirm it
                if np.mean(ratio > gap_cut) > TAIL_SHARE:
                    apart = confirmed(item, members, ratio, gap_cut)
            if apart:
                item.backdoor, item.rule = True, MIXED_ORIGIN
                item.gap, item.group_agrees = gap, agrees
                item.cut_ratio = gap_cut
                between = (ratio > item.cut_ratio) & (ratio <= settings.far_ratio)
                # the samples between the gap and the far group are flagged only when they are
                # of diverse origin too, as the far group is: a class's most significant gap
                # can lie among its own samples (8x8 digits, a 5 % blend into the fours: at
                # ratio 2.5-3.8, 12 clean fours and 7 poisons between it and the far group); the
                # poisons nearer in are then left to group completion
                if not (
                    int(between.sum()) >= settings.min_group_size
                    and _entropy(runner_up[between], n_classes) - item.core_entropy
                    >= settings.min_entropy_gain
                ):
                    item.cut_ratio = max(item.cut_ratio, settings.far_ratio)
            elif item.easy or transplant is not None:
                # learned easily but with no gap: a natural sub-type can be both (the sandals'
                # second mode once a patch backdoor into another class reshaped the features);
                # where the model can be asked, the group's difference must carry the label,
                # and a group whose difference does is called even when it is not easy
                cut = emptiest_cut(ratio, settings.core_ratio, settings.far_ratio)
                if transplant is None or confirmed(item, members, ratio, cut):
                    item.backdoor, item.rule = True, MIXED_ORIGIN
                    # flag no nearer than the far group the test measured: between the core
                    # and the far ratio a class's natural samples and a few faint poisons mix
                    # (8x8 digits, 5 % blend: 22 clean samples beyond the emptiest point), and
                    # group completion, which runs next, adds the poisons from there
                    item.cut_ratio = max(cut, settings.far_ratio)
    if (
        distance_ratio is not None
        and transplant is not None
        and input_votes is not None
        and splits
        and (n_classes < 4 or scored_classes.sum() < 4)
    ):
        # runner-up variety cannot speak with two or three classes; whether the input itself
        # says another class can (a dirty-label poison is its source class's pixels), and the
        # transplant test then asks whether what sets the cluster apart carries the label. It
        # runs before the separated-group test: in a two-class task the distance ratios of a
        # class have a tail as heavy as the poisons' (Fashion-MNIST trousers and sneakers, a 5 %
        # patch: the poisons from ratio 587 on, 1 % of the clean trousers beyond 2,645)
        for split in splits:
            if not scored_classes[split.code]:
                continue
            item = evidence[split.code]
            members = np.flatnonzero(labels == split.code)
            group = np.asarray(split.minority, dtype=np.int64)
            if group.size < max(settings.min_group_size, settings.min_group_share * members.size):
                continue
            votes = input_votes(group, np.flatnonzero(flagged))[1]
            item.foreign_share = foreign_share(votes, split.code)
            if item.foreign_share < FOREIGN_SHARE:
                continue
            rest = np.setdiff1d(members, group)
            item.transplant_share = transplant(split.code, group, rest, probes.of(split.code))
            if item.transplant_share < TRANSPLANT_SHARE:
                continue
            item.backdoor, item.rule, item.cluster_size = True, FOREIGN_CLUSTER, int(group.size)
            targets.append(int(split.code))
            flagged[group] = True
            kind[group] = BACKDOOR
    if distance_ratio is not None:
        tested = np.flatnonzero(scored_classes)
        threshold = settings.gap_alpha / max(tested.size, 1)
        for code in tested:
            item = evidence[code]
            members = np.flatnonzero(labels == code)
            ratio = distance_ratio.take(members)
            if not np.isfinite(item.far_share):
                item.far_share = float(np.mean(ratio > settings.far_ratio))
            if item.rule == FOREIGN_CLUSTER:
                continue  # called and flagged above
            if not item.backdoor:
                gap, agrees = _group_apart(
                    ratio,
                    members,
                    code,
                    oos_probabilities,
                    search_from=settings.far_ratio,
                    tail_share=TAIL_SHARE,
                    settings=settings,
                )
                item.gap, item.group_agrees = gap, agrees
                # mislabelled samples form far groups too, but a model that never saw them
                # puts them in another class; a backdoor's poisons carry their label's trigger
                if gap is not None and gap.p_value < threshold and agrees >= 0.5:
                    item.backdoor, item.rule = True, SEPARATED_GROUP
                    # the cut sits in the middle of the gap (geometric mean of its edges)
                    item.cut_ratio = float(np.sqrt(gap.upper * gap.lower))
                elif transplant is not None:
                    # a group beyond the farthest quarter is a mode of the class (an all-to-one
                    # backdoor at 5 % is a third of its target), where the tail's null model
                    # does not hold: a natural mode reached p = 3e-5; the transplant test tells
                    # a trigger from a sub-type
                    large, agrees = _group_apart(
                        ratio,
                        members,
                        code,
                        oos_probabilities,
                        search_from=settings.far_ratio,
                        tail_share=LARGE_TAIL_SHARE,
                        settings=settings,
                    )
                    if large is not None and large.p_value < threshold and agrees >= 0.5:
                        cut = float(np.sqrt(large.upper * large.lower))
                        if confirmed(item, members, ratio, cut):
                            item.backdoor, item.rule = True, SEPARATED_GROUP
                            item.gap, item.group_agrees, item.cut_ratio = large, agrees, cut
            hit = members[ratio > item.cut_ratio] if item.backdoor else members[:0]
            if item.backdoor and foreign_texts is not None:
                # texts: a group of the class's own texts (a topic) is no dirty-label backdoor;
                # the scan says so in a warning, with the class's name. The texts the
                # trigger-words test flags are its own: the rest is judged alone (airline
                # tweets poisoned with "cf": 231 poisons stood apart with 36 "@united thank
                # you!" tweets, and the poisons made the whole group read as another class)
                judged = hit if trigger_words is None else hit[~trigger_words.flagged[hit]]
                if judged.size == 0 or not foreign_texts(code, judged):
                    item.backdoor, item.rule = False, ""
            if item.backdoor:
                targets.append(int(code))
                flagged[hit] = True
                kind[hit] = BACKDOOR
    # only where the model can be asked: a split of a clean class into two sub-types can differ
    # in runner-ups too, and nothing else here tells them from poisons
    if (
        transplant is not None
        and splits
        and distance_ratio is not None
        and n_classes >= 4
        and scored_classes.sum() >= 4
    ):
        typical = _typical_core_margin(evidence)
        for split in splits:
            item = evidence[split.code]
            if item.backdoor or not scored_classes[split.code]:
                continue
            members = np.flatnonzero(labels == split.code)
            called = _mixed_origin_cluster(
                split.code, members, split, probabilities, margin, typical, n_classes, settings
            )
            if called is None:
                continue
            group, rest, measured_here = called
            share = transplant(split.code, group, rest, probes.of(split.code))
            if share < TRANSPLANT_SHARE:
                continue
            for name, value in measured_here.items():
                setattr(item, name, value)
            item.backdoor, item.rule, item.cluster_size = True, CLUSTERED_GROUP, int(group.size)
            item.transplant_share = share
            targets.append(int(split.code))
            flagged[group] = True
            kind[group] = BACKDOOR
    # the transplant tests below take a majority beyond chance at the gap tests' level
    class_alpha = settings.gap_alpha / max(int(scored_classes.sum()), 1)
    # a backdoor's poisons hidden in a class's large natural tail (no gap), or carrying a
    # trigger from one source class (TaCT: one runner-up, and the transplant over every class
    # does not confirm it): the input says which far samples come from other classes, and
    # every other class's samples, or the one source's, are asked
    if (
        transplant is not None
        and input_votes is not None
        and features is not None
        and distance_ratio is not None
        and n_classes >= 4
        and scored_classes.sum() >= 4
    ):
        features = as_rows(features)
        for code, item, members, ratio in _uncalled(
            evidence, scored_classes, labels, distance_ratio
        ):
            far = members[ratio > settings.far_ratio]
            core = members[ratio <= settings.core_ratio]
            if far.size < settings.min_group_size or core.size == 0:
                continue
            # the flagged samples are no references: a poison labelled as another backdoor's
            # target sits among its source's samples (a checkerboard bag labelled "sneaker" makes
            # the bags' natural mode look like sneakers)
            queried, votes = input_votes(far, np.flatnonzero(flagged))
            # poisons from every other class first (their difference moves every class), then
            # from the one class the input names most often (it moves that class alone)
            named = _most_named(votes, code)
            for source in (ANY_SOURCE,) if named == ANY_SOURCE else (ANY_SOURCE, named):
                part = _looking_part(
                    code, far, queried, votes, source, features, settings.min_group_size
                )
                if part is None:
                    continue
                group, looks = part
                if source == ANY_SOURCE:
                    item.foreign_share = looks
                else:
                    item.source_class, item.foreign_share = source, looks
                # a group of foreign origin, as in the foreign-cluster test: most of it looks
                # like another class (the bags' natural mode holds a part near the sneakers, 39 %
                # of which look like sneakers; a TaCT group 75 %)
                if looks < FOREIGN_SHARE:
                    continue
                asked = probes.of(code) if source == ANY_SOURCE else probes.from_class(source)
                share = transplant(int(code), group, core, asked)
                # a majority beyond chance at the gap tests' level: one class's 50 probes,
                # where natural groups moved up to half (the trousers' pullover-like part, 25
                # of 50), take 39
                if not majority_beyond_chance(share, asked.size, class_alpha):
                    continue
                item.transplant_share, item.cluster_size = share, int(group.size)
                if int(code) in last_ask:
                    # what carried the call is this ask's own: the far group's difference
                    # added to every other class moved half of them to the bags, T-shirts
                    # warped into them, but the T-shirts asked 22 % added, 100 % warped
                    item.pattern_share, item.warp_share = last_ask[int(code)]
                item.backdoor = True
                item.rule = FOREIGN_GROUP if source == ANY_SOURCE else SINGLE_SOURCE
                targets.append(int(code))
                flagged[group] = True
                kind[group] = BACKDOOR
                break
    # a backdoor too rare to form a group any test above can see: a patch on 0.1 % of
    # Fashion-MNIST is 1 % of its target class, inside the class's far tail (4.9 % of it, which
    # thins out smoothly past the poisons: no gap) and too few to make the far group's
    # runner-ups varied. Its poisons are the farthest few, and what they hold in common
    # carries the label
    if farthest_samples and transplant is not None and distance_ratio is not None:
        for code, item, members, ratio in _uncalled(
            evidence, scored_classes, labels, distance_ratio
        ):
            size = max(settings.min_group_size, int(round(FARTHEST_SHARE * members.size)))
            farthest = np.argsort(-ratio, kind="stable")[:size]
            group = np.sort(members[farthest[ratio[farthest] > settings.far_ratio]])
            core = members[ratio <= settings.core_ratio]
            if group.size < settings.min_group_size or core.size == 0:
                continue
            asked = probes.of(code)
            # stamped and blended only: a group chosen for its distance differs from the core
            # by a large mean by construction, and that difference added moves probes for its
            # size alone (the trousers' farthest 1 %: 63 % of the probes moved added, none
            # stamped or blended)
            share = transplant(int(code), group, core, asked, added=False)
            if not majority_beyond_chance(share, asked.size, class_alpha):
                continue
            item.transplant_share, item.cluster_size = share, int(group.size)
            item.backdoor, item.rule = True, FARTHEST_SAMPLES
            targets.append(int(code))
            flagged[group] = True
            kind[group] = BACKDOOR
    # a rare dirty-label backdoor inside a class's large natural far tail (a blend on 0.1 % of
    # Fashion-MNIST into the sandals, whose far group is 36 % of the class: its poisons are not
    # the farthest): heads that never saw its poisons read them as their source classes with
    # near certainty, as they read mislabelled samples; what mislabelled samples have in
    # common is other classes' looks, which moves no probe to the class, where the poisons
    # share a trigger that does
    if (
        mislabel_like
        and transplant is not None
        and oos_probabilities is not None
        and distance_ratio is not None
    ):
        for code, item, members, ratio in _uncalled(
            evidence, scored_classes, labels, distance_ratio
        ):
            read = oos_probabilities.take(members)
            disowned = (read[:, code] < MISLABEL_LIKE_P) & (read.argmax(axis=1) != code)
            disowned &= ~flagged[members]
            group = members[disowned]
            core = members[ratio <= settings.core_ratio]
            if group.size < settings.min_group_size or core.size == 0:
                continue
            asked = probes.of(code)
            share = transplant(int(code), group, core, asked)
            item.mislabel_like_share = share
            confirmed = majority_beyond_chance(share, asked.size, class_alpha)
            if not confirmed and common_pattern is None:
                continue
            queried, agreeing = group[:0], np.zeros(0, dtype=bool)
            if common_pattern is not None:
                # a trigger the model did not learn (an adaptive blend: pieces of it on each
                # poison, conservatism samples beside them) moves no probe; in the input, what
                # the group's members hold beyond their look-alikes is that trigger, the same
                # in members of every source class, where a natural member's is its own detail
                queried, agreement = common_pattern(
                    group, read[disowned].argmax(axis=1), int(code), np.flatnonzero(flagged)
                )
                agreeing = agreement > AGREEING_Z
                item.common_pattern_share = float(agreeing.mean()) if agreeing.size else 0.0
                item.pattern_agreeing, item.pattern_disagreeing = beyond_both_ways(agreement)
                item.pattern_p = one_way_p(item.pattern_agreeing, item.pattern_disagreeing)
            if confirmed:
                item.transplant_share = share
                item.backdoor, item.rule = True, MISLABEL_LIKE
            elif majority_beyond_chance(item.common_pattern_share, agreeing.size, class_alpha):
                item.backdoor, item.rule = True, COMMON_PATTERN
            elif item.pattern_p < class_alpha:
                # no majority: the group is diluted by the class's natural mislabel-like
                # samples (an adaptive blend into the shirts, whose sources look like shirts:
                # 34 poisons and 23 natural shirts, 38 agreeing, 67 %). But beyond the bar
                # the members agree one way: 22 against 2, where natural groups, which lean
                # the agreeing way a little (a class's ambiguous samples share some detail:
                # the bags, 16 against 1 beyond the agreeing z), have at most one member
                # beyond it either way (164 natural groups of 20 Fashion-MNIST scans)
                item.backdoor, item.rule = True, COMMON_PATTERN
            else:
                continue
            if agreeing.sum() >= settings.min_group_size:
                # the members that hold the pattern; the rest are the class's natural
                # mislabel-like samples (the 0.1 % blend into the sandals: 33 of 44 agree, and
                # grown from those, 51 of its 60 poisons and 4 clean samples are flagged, from
                # all 44, 43 and 17)
                group = queried[agreeing]
            item.cluster_size = int(group.size)
            targets.append(int(code))
            flagged[group] = True
            kind[group] = BACKDOOR
    # a clean-label backdoor: part of the class carries one added pattern, labels kept (SIG
    # on half of the T-shirts). Nothing of it is far or foreign; in the input it is a gap along
    # a direction only this class varies along, whose sides differ by that pattern alone
    samples = None if inputs is None else as_rows(inputs)
    if (
        pattern_split
        and transplant is not None
        and distance_ratio is not None
        and samples is not None
    ):
        uncalled = [
            code for code, *_ in _uncalled(evidence, scored_classes, labels, distance_ratio)
        ]
        if uncalled and samples.width > PATTERN_SPLIT_WIDTH:
            notes.append(
                f"pattern-split test off: {samples.width} values per sample, more than "
                f"{PATTERN_SPLIT_WIDTH}"
            )
        elif uncalled:
            low, high = _value_range(samples)
            for split in class_splits(
                samples.take,
                labels,
                np.array(uncalled),
                min_group_size=settings.min_group_size,
                seed=seed,
            ):
                item = evidence[split.code]
                item.pattern_gap_p = split.p_value
                if split.p_value >= class_alpha:
                    continue
                item.pattern_left = separation_left(
                    samples.take(split.high), samples.take(split.low), low=low,
                    high=high, seed=seed,
                )  # fmt: skip
                if not item.pattern_left < PATTERN_LEFT:
                    # the sides differ by more than a pattern: a dirty-label backdoor's
                    # poisons are their source classes' samples with a trigger, and its own
                    # direction can set them apart where nothing is far (8x8 digits, 5 %
                    # blends: exact splits of the 72 poisons, p 1e-49 to 1e-123)
                    group = (
                        None
                        if input_votes is None
                        else _foreign_split(
                            item, split, input_votes, transplant, probes, flagged, class_alpha
                        )
                    )
                    if group is not None:
                        targets.append(int(split.code))
                        flagged[group] = True
                        kind[group] = BACKDOOR
                    continue
                # which side carries the pattern: its difference, added to other classes'
                # samples, moves them to the class; the other side's (the pattern taken away)
                # does not. More probes moved one way than the other, beyond chance
                asked = probes.of(split.code)
                up = pattern_transplant(split.code, split.high, split.low, asked)
                down = pattern_transplant(split.code, split.low, split.high, asked)
                moved_up, moved_down = round(up * asked.size), round(down * asked.size)
                if not _one_way(moved_up, moved_down, class_alpha):
                    continue
                group = split.high if moved_up > moved_down else split.low
                item.transplant_share = max(up, down)
                item.pattern_reverse_share = min(up, down)
                item.cluster_size = int(group.size)
                item.backdoor, item.rule = True, PATTERN_SPLIT
                targets.append(int(split.code))
                flagged[group] = True
                kind[group] = BACKDOOR
    if trigger_words is not None:
        for trigger in trigger_words.triggers:
            item = evidence[trigger.label]
            item.triggers.append(trigger)
            if not item.backdoor:
                targets.append(trigger.label)
            # the words are the more telling evidence, whichever test also called the class
            item.backdoor, item.rule = True, TRIGGER_WORDS
        flagged |= trigger_words.flagged
        kind[trigger_words.flagged] = BACKDOOR

    # --- group completion: the poisons the tests' one-number cuts left below them -------------
    # first in the model's features, then in the samples themselves: the trigger is written in
    # the input in full in every poison (a patch's pixels, a blended pattern), also in those the
    # model learned too faintly for its features to tell them from the class (the digits' 5 %
    # blend: 7 of 72 poisons left after the features, none after the pixels)
    # before both, the samples that carry the group's stamp (a patch) join: the discriminants
    # cannot add poisons that outnumber the group in the rest of the class
    if samples is not None and samples.width > INPUT_COMPLETION_WIDTH:
        if targets:
            notes.append(
                f"group completion in the samples themselves off: {samples.width} values per "
                f"sample, more than {INPUT_COMPLETION_WIDTH} (it ran in the model's features)"
            )
        samples = None

    def carriers(rows: Rows, members: np.ndarray, group: np.ndarray, _seed: int) -> np.ndarray:
        return stamp_carriers(rows, members, group)

    def grow(members: np.ndarray, rows: Rows | None, complete) -> np.ndarray:
        """Grow the group among a class's ``members`` in one space; the samples that joined
        (flagged now)."""
        if rows is None:
            return np.zeros(0, dtype=np.int64)
        group = kind[members] == BACKDOOR
        joined = members[complete(rows, members, group, seed) & ~group]
        flagged[joined] = True
        kind[joined] = BACKDOOR
        return joined

    feature_rows = None if features is None else as_rows(features)
    sample_rows = None if samples is None else as_rows(samples)
    for code in targets:
        item = evidence[code]
        if item.rule in (TRIGGER_WORDS, PATTERN_SPLIT):
            # the texts holding the words, the side of the gap: the group, exactly
            continue
        members = np.flatnonzero(labels == code)
        called = (flagged[members].copy(), kind[members].copy())
        # a group called for a pattern the model did not learn is not apart in its features
        in_model = None if item.rule == COMMON_PATTERN else feature_rows
        # a class only the warp search carried: its trigger is no pattern written in the input
        # (a stamp, a discriminant or a pattern fit there follows the source classes' looks;
        # the WaNet into the dresses: 593 of 600 poisons and 242 clean samples flagged with
        # them, 587 and 10 in the features alone)
        if warp is not None:
            # does a warp reach the class, whatever called it? (the class's own probes, the
            # ones the anchors use; a class the second pass called was asked them already)
            reach = warp(int(code), probes.of(int(code)))
            if (
                pattern_completion is not None
                and sample_rows is not None
                and not carried_by_warp(item)
                and _judged_by_pattern(item)
            ):
                # a group about to be trimmed to the members that carry its pattern: is the
                # class carried by a warp at least as far as by that pattern? (WaNet with its
                # noise mode into the sneakers: the group's difference moved 64 % of the
                # probes, a warp 97 %, and the trim left 180 of the group out, most of them
                # poisons.) On every Fashion-MNIST class not poisoned by a warp, a warp
                # reached at most 18 %
                item.warp_share = float(np.nanmax([item.warp_share, reach]))
                item.pattern_share = float(np.nanmax([item.pattern_share, item.transplant_share]))
                item.warp_over_pattern = bool(
                    reach >= TRANSPLANT_SHARE and reach >= item.transplant_share
                )
        else:
            reach = float("nan")
        in_samples = None if carried_by_warp(item) else sample_rows
        complete_in_model = complete_group
        if reach >= TRANSPLANT_SHARE and warp_features is not None and in_model is not None:
            # the group was flagged from some sources (those least like the class, or those
            # whose poisons the model learned best); the probes, warped and not, show the
            # discriminant what the warp changes whatever the source (WaNet at strength 1 into
            # the ankle boots, called at a gap: 474 flagged with 471 of 600 poisons; with the
            # probes 576 with 573, measured with a script)
            asked = probes.of(int(code))
            warped = warp_features(int(code), asked)
            complete_in_model = _with_warp_anchors(complete_group, in_model, asked, warped)
            item.warp_probes_share = reach
        stamped = grow(members, in_samples, carriers).size
        in_features = in_input = 0
        # the features, then the samples; once more while the features' discriminant, refitted
        # from the grown group, adds samples: a group grown in the samples is a better start
        # for it (the digits' 5 % blend into the eights, seed 17: one turn and the stamps
        # left 14 of its 72 poisons, three turns none, and one clean sample joined). Not while
        # only the samples add: their discriminant, in hundreds of values, takes in a clean
        # sample or two a turn once the poisons are in, and the features' follows it (the
        # blend into the fours, seed 10: 85 flagged with every poison after one turn, 91 after
        # three). A later turn that adds fewer than the decision's smallest group is that
        # drift, not a group, and is undone (Fashion-MNIST with two backdoors: 1, 2, 3 and 2
        # clean samples a turn)
        for turn in range(COMPLETION_TURNS):
            before = (flagged[members].copy(), kind[members].copy()) if turn else None
            by_features = grow(members, in_model, complete_in_model)
            if before is not None and not by_features.size:
                break
            by_input = grow(members, in_samples, complete_group)
            if before is not None and by_features.size + by_input.size < settings.min_group_size:
                flagged[members], kind[members] = before
                break
            in_features += by_features.size
            in_input += by_input.size
        # and the stamp once more after them: a group the tests flagged from a few source
        # classes holds their common values beside the trigger's; grown by the discriminants,
        # its stamp is the trigger's alone (a patch into the digits' eights: 11 flagged, 30
        # after the discriminants, all 72 carry the stamp of those 30)
        stamped += grow(members, in_samples, carriers).size
        if pattern_completion is not None and in_samples is not None and _judged_by_pattern(item):
            # a mislabel-like group's poisons are their source classes' looks, and the ones the
            # group missed are from other sources, or ones the model learnt (read as the
            # label): a discriminant in the images learns those looks as "not the group". What
            # a member holds beyond its look-alikes is the trigger, whatever its source (the
            # adaptive blend into the dresses, seed 51: 46 of 180 poisons left after the
            # images, 2 after this, with 3 clean samples more). So for a far group of mixed
            # origin with no gap before it: its cut is the emptiest point, not the group's
            # edge, and poisons lie on the class's side of it too (the adaptive blend into the
            # pullovers, 1 %, seed 54: 339 of 600 left after the images, 25 after this, with
            # 5 clean samples more). Not for a group that ends at a gap: it is apart, and a
            # patch's residual meets the class's natural detail at the patch's place (all-to-
            # all at 5 %: every poison found, and this, tried before carrying's two-tailed bar,
            # added 1,022 clean samples)
            in_group = kind[members] == BACKDOOR
            grown_mask = pattern_completion(members, in_group, int(code), np.flatnonzero(flagged))
            joined = members[grown_mask & ~in_group]
            flagged[joined] = True
            kind[joined] = BACKDOOR
            item.completed_by_pattern = int(joined.size)
            # and the members that do not carry the group's pattern leave it: the tests and
            # completions take natural members in with the poisons (the adaptive blend into
            # the bags: 29 clean samples flagged, 21 after this, every poison kept; a cut at
            # the emptiest point, the fresh blend into the trousers: 201, 25 after this)
            left_out = members[in_group & ~grown_mask]
            flagged[left_out] = False
            kind[left_out] = ""
            item.left_by_pattern = int(left_out.size)
        grown = members[(kind[members] == BACKDOOR) & ~called[0]]
        if (
            foreign_texts is not None
            and grown.size
            and not foreign_texts(code, members[kind[members] == BACKDOOR], grown=True)
        ):
            # texts: what the discriminant joined must be another class's texts too (10 % of
            # crowd-labelled tweets flipped: six "thank you" tweets to airlines, whose rest
            # reads negative, stood apart, and the features joined 235 more of their kind)
            flagged[members], kind[members] = called
            in_features = in_input = stamped = 0
            item.completed_by_pattern = 0
        item.completed = int(in_features)
        item.completed_in_input = int(in_input + stamped)

    targets.sort()

    # --- label-noise rule ----------------------------------------------------------------------
    noisy, pair_median = False, float("nan")
    flipped_pairs: list[FlippedPair] = []
    decision_noise_rate = float("nan")
    label_floor: FloorTest | None = None
    # texts with a trusted clean sample: the heads on the text model's features agree with
    # every label it memorised, so the rule reads the heads on the words, and measures the
    # corpus's own disagreement on the trusted texts (see ``trusted_words``)
    reading_words = trusted_words is not None and label_probabilities is not None
    rule_probabilities = as_rows(label_probabilities) if reading_words else oos_probabilities
    if rule_probabilities is None:
        notes.append("label-noise rule off: the confident-learning detector did not run")
    else:
        active = np.flatnonzero(scored_classes)
        given = rule_probabilities.map(_given, labels)
        thresholds = np.full(n_classes, np.inf)
        for code in active:
            thresholds[code] = given[(labels == code) & scored].mean()
        confident = rule_probabilities.map(partial(_confident, thresholds))
        # the confident joint's off-diagonal: samples given one label, confidently another
        disagree = scored & (confident >= 0) & (confident != labels)
        pairs = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(pairs, (labels[disagree], confident[disagree]), 1)
        if active.size >= 2:
            block = pairs[np.ix_(active, active)]
            off_diagonal = block[~np.eye(active.size, dtype=bool)]
            # the count a majority of the pairs reach: with two classes both directions
            pair_median = float(np.sort(off_diagonal)[(off_diagonal.size - 1) // 2])
            estimated_rate = pair_median * off_diagonal.size / max(n, 1)
            noisy = (
                pair_median >= settings.min_pair_count and estimated_rate >= settings.min_noise_rate
            )
        if reading_words and active.size >= 2:
            # a text corpus disagrees with its own labels naturally; only disagreement beyond
            # the trusted texts' (the same heads, the same bars) is noise. Samples already
            # flagged as poisons leave the count.
            kept = np.isin(trusted_words.labels, active)
            trusted_confident = confident_classes(
                np.asarray(trusted_words.probabilities, dtype=np.float64)[kept], thresholds
            )
            trusted_labels = trusted_words.labels[kept]
            open_ = scored & ~flagged
            label_floor = disagreement_above_floor(
                disagree[open_],
                (trusted_confident >= 0) & (trusted_confident != trusted_labels),
            )
            noisy = noisy and label_floor.p_value < settings.gap_alpha
        if noisy:
            # which samples: those more likely mislabelled than not, at the noise rate the
            # confident joint estimates (the bar on p_y follows the noise and the class count)
            noise_rate = estimated_noise_rate(labels[scored], confident[scored], n_classes)
            mislabelled = rule_probabilities.map(
                partial(_mislabelled, noise_rate, active.size), labels
            )
            decision_noise_rate = noise_rate
            hit = scored & mislabelled & ~flagged
            flagged |= hit
            kind[hit] = LABEL_NOISE
        elif active.size >= 2 and oos_probabilities is not None:
            # flips spread over the pairs did not show; a targeted flip fills one pair one way
            # (samples already flagged as poisons leave the count: a dirty-label backdoor's
            # poisons may read as their source class). It reads the heads on the features,
            # texts too (as without a trusted sample: natural confusion between the topics of
            # texts' words was not measured).
            if reading_words:
                given = oos_probabilities.map(_given, labels)
                for code in active:
                    thresholds[code] = given[(labels == code) & scored].mean()
                confident = oos_probabilities.map(partial(_confident, thresholds))
            open_ = scored & ~flagged
            found = one_sided_pairs(labels[open_], confident[open_], active, settings.gap_alpha)
            if found is None:
                notes.append(
                    "targeted-flip test off: too few class pairs with confident disagreements "
                    f"(at least {PAIR_MIN_PAIRS} pairs of {PAIR_MIN_COUNT} or more) to estimate "
                    "how one-sided natural confusion is"
                )
            elif found:
                predicted = oos_probabilities.map(_most_probable)
                for pair in found:
                    # the samples given the pair's label that a model that never saw them reads
                    # as the other class of the pair
                    hit = open_ & (labels == pair.given) & (predicted == pair.predicted)
                    flagged |= hit
                    kind[hit] = LABEL_NOISE
                    evidence[pair.given].flipped_from.append(pair)
                flipped_pairs.extend(found)
                noisy = True
        label_noise = kind == LABEL_NOISE
        for code in range(n_classes):
            evidence[code].label_flags = int(np.count_nonzero(label_noise & (labels == code)))

    if (
        transplant is not None
        and warp is not None
        and warp_classes is None
        and distance_ratio is not None
    ):
        # the warp, asked last: the classes left uncalled that a warp reaches are judged again
        # with its share beside the patterns' (a class called by a pattern keeps its group).
        # A class whose far group the single-source test found looking like one class is asked
        # with that class's probes too: a source-specific warp (WaNet with cover samples, the
        # warp on other classes' samples without the label) moves its source alone (T-shirts
        # warped into the bags: 100 % of the T-shirt probes, 12 % of all nine classes' probes
        # together). A near class can be pushed over too (the shirts to the pullovers, up to
        # 80 % by the most probable class), hence the bar on the model's probability
        # (``_source_warped``)
        reached = frozenset(
            int(code)
            for code in np.flatnonzero(scored_classes)
            if int(code) not in targets
            and probes.of(int(code)).size
            and (
                warp(int(code), probes.of(int(code))) >= TRANSPLANT_SHARE
                or _source_warped(evidence[int(code)], int(code), warp, probes, class_alpha)
            )
        )
        if reached:
            return decide(**{**call, "warp_classes": reached})
    # a backdoor's evidence orders the samples unless the decision found label noise only;
    # on texts (``label_probabilities``: a model that never saw a text reads its words) that
    # reading alone orders them: a dirty-label text poison is another class's text too, and
    # the distance ratios and word drops of a text model that memorised its training set
    # rank natural texts among the poisons (every text row of the benchmarks, 188 with
    # poisons or flips: AUROC of the ordering by the words alone at least that of the
    # maximum, to 1e-4, on every one; 10 %-flipped Rotten Tomatoes snippets 0.56 -> 0.76,
    # the BBC News "weather" sentence at 1 %, nothing flagged, 0.69 -> 0.90)
    backdoor_evidence = not (noisy and not targets) and label_probabilities is None
    score = _fused_score(
        flagged,
        distance_ratio if backdoor_evidence else None,
        as_rows(label_probabilities) if label_probabilities is not None else oos_probabilities,
        None if trigger_words is None or not backdoor_evidence else trigger_words.score,
        labels,
        settings,
    )
    return Decision(
        flagged=flagged,
        score=score,
        kind=kind,
        fired=fired,
        evidence=evidence,
        target_classes=targets,
        noisy_labels=noisy,
        pair_median=pair_median,
        notes=notes,
        by_trigger_words=None if trigger_words is None else trigger_words.flagged.copy(),
        noise_rate=decision_noise_rate,
        flipped_pairs=flipped_pairs,
        label_floor=label_floor,
    )


class _Probes:
    """The probes of the transplant test, per class (see
    :func:`~poisonguard.detectors.transplant.probe_rows`): the most typical samples of the other
    classes (smallest distance ratio first) that lie in their class's core and that the model
    reads as their label. Read from the distance ratios and probabilities once, when first
    needed."""

    def __init__(self, labels, scored, distance_ratio, probabilities, core_ratio):
        self._arguments = (labels, scored, distance_ratio, probabilities, core_ratio)
        self._typical: np.ndarray | None = None
        self._order: np.ndarray | None = None

    def of(self, code: int) -> np.ndarray:
        labels, scored, distance_ratio, probabilities, core_ratio = self._arguments
        if self._typical is None:
            ratio = distance_ratio.whole().astype(np.float64)
            read_as_label = probabilities.map(_most_probable) == labels
            self._typical = scored & read_as_label & (ratio <= core_ratio)
            self._order = np.argsort(ratio, kind="stable")
        return probe_rows(labels, code, self._typical, self._order)

    def from_class(self, source: int) -> np.ndarray:
        """The probes of class ``source`` alone (as many as :meth:`of` takes from a class)."""
        labels = self._arguments[0]
        self.of(source)  # reads the typical samples and their order once
        order = self._order[(labels[self._order] == source) & self._typical[self._order]]
        return np.sort(order[:PROBES_PER_CLASS])


ANY_SOURCE = -1
"""A far group's part that looks like any other class (see :func:`_looking_part`)."""


def _uncalled(
    evidence: list[ClassEvidence],
    scored_classes: np.ndarray,
    labels: np.ndarray,
    distance_ratio: Rows,
) -> Iterator[tuple[int, ClassEvidence, np.ndarray, np.ndarray]]:
    """Each scored class that no test has called yet, when its turn comes: its code, evidence,
    members (positions) and their distance ratios."""
    for code in np.flatnonzero(scored_classes):
        item = evidence[code]
        if item.backdoor:
            continue
        members = np.flatnonzero(labels == code)
        yield int(code), item, members, distance_ratio.take(members)


def _value_range(samples: Rows) -> tuple[float, float]:
    """The smallest and largest value of the samples (read a block of rows at a time)."""
    low, high = np.inf, -np.inf
    for _, block in samples.blocks():
        low, high = min(low, float(np.min(block))), max(high, float(np.max(block)))
    return low, high


def _foreign_split(
    item: ClassEvidence,
    split: PatternSplit,
    input_votes: InputVotes,
    transplant: Transplant,
    probes: _Probes,
    flagged: np.ndarray,
    alpha: float,
) -> np.ndarray | None:
    """The smaller side of a class's pattern split when it is a dirty-label backdoor's
    poisons (``None`` otherwise): it looks like other classes in the input (at least
    ``FOREIGN_SHARE`` of its queried members), and its difference from the other side, added,
    stamped or blended into every other class's probes, moves a majority beyond chance to the
    class. Records the evidence and sets the rule when it is."""
    group, rest = sorted((split.low, split.high), key=len)
    looks = foreign_share(input_votes(group, np.flatnonzero(flagged))[1], split.code)
    item.foreign_share = looks
    if looks < FOREIGN_SHARE:
        return None
    asked = probes.of(split.code)
    share = transplant(split.code, group, rest, asked)
    item.transplant_share = share
    if not majority_beyond_chance(share, asked.size, alpha):
        return None
    item.cluster_size = int(group.size)
    item.backdoor, item.rule = True, FOREIGN_SPLIT
    return group


def _with_warp(
    transplant: Transplant,
    warp: Warp,
    evidence: list[ClassEvidence],
    classes: frozenset[int],
    last_ask: dict[int, tuple[float, float]],
) -> Transplant:
    """The transplant test with the warp search beside it in ``classes``: the larger share
    counts, each such class's evidence keeps the largest of either seen, and ``last_ask``
    the last ask's two shares (pattern, warp) by class."""

    def asked(
        code: int, group: np.ndarray, core: np.ndarray, probes: np.ndarray, added: bool = True
    ) -> float:
        share = transplant(code, group, core, probes, added=added)
        if int(code) not in classes:
            return share
        reach = warp(code, probes)
        item = evidence[code]
        item.pattern_share = float(np.nanmax([item.pattern_share, share]))
        item.warp_share = float(np.nanmax([item.warp_share, reach]))
        last_ask[int(code)] = (float(share), float(reach))
        return max(share, reach)

    return asked


def _source_warped(
    item: ClassEvidence, code: int, warp: Warp, probes: _Probes, alpha: float
) -> bool:
    """Whether a warp moves the probes of the one class the single-source test found the
    class's far group looking like (``item.source_class``, at least ``FOREIGN_SHARE`` of the
    part) to the class, a majority beyond chance at ``alpha`` (as that test asks of a pattern),
    each read as the class with a probability of at least
    :data:`~poisonguard.detectors.warp_search.SURE`: one class's samples can lie near another
    class, and a warp searched for can push most of them over (the shirts to the pullovers,
    80 %, without a warp in the data), not make the model sure of them. False where the test
    named no source."""
    if item.source_class < 0 or not item.foreign_share >= FOREIGN_SHARE:
        return False
    asked = probes.from_class(item.source_class)
    return bool(asked.size) and majority_beyond_chance(
        warp(code, asked, sure=True), asked.size, alpha
    )


def _with_warp_anchors(complete, features: Rows, probes: np.ndarray, warped: np.ndarray):
    """``complete`` (a group completion) with the warp search's ``probes`` (their ``features``:
    not with the group) and the same probes ``warped`` (with it) added to every fit."""
    if not probes.size or warped.shape[0] != probes.size:
        return complete
    anchors = (
        np.concatenate([features.take(probes, dtype=np.float32), warped]),
        np.repeat([False, True], probes.size),
    )

    def anchored(rows: Rows, members: np.ndarray, group: np.ndarray, seed: int) -> np.ndarray:
        return complete(rows, members, group, seed, anchors=anchors)

    return anchored


def carried_by_warp(item: ClassEvidence) -> bool:
    """Whether the warp search carried the class: only it (its share at least
    ``TRANSPLANT_SHARE``, every pattern transplant's below), or at least as far as the pattern
    that called the class (:attr:`ClassEvidence.warp_over_pattern`)."""
    return bool(
        item.warp_over_pattern
        or (
            item.warp_share >= TRANSPLANT_SHARE
            and not (item.pattern_share >= TRANSPLANT_SHARE)  # nan: no pattern asked
        )
    )


def _judged_by_pattern(item: ClassEvidence) -> bool:
    """Whether the class's group is completed and trimmed by its pattern (see ``decide``): a
    mislabel-like group, one the common-pattern test called, or a far group of mixed origin
    with no gap before it."""
    return item.rule in (COMMON_PATTERN, MISLABEL_LIKE) or (
        item.rule == MIXED_ORIGIN and item.gap is None
    )


def _one_way(moved: int, moved_back: int, alpha: float) -> bool:
    """Whether ``max(moved, moved_back)`` of the ``moved + moved_back`` probes that moved did so
    one way beyond chance: the one-sided sign test below ``alpha``."""
    return one_way_p(max(moved, moved_back), min(moved, moved_back)) < alpha


def _most_named(votes: np.ndarray, code: int) -> int:
    """The class other than ``code`` that the most ``votes`` name (``ANY_SOURCE`` if none)."""
    named = np.asarray(votes)[np.asarray(votes) != code].astype(np.int64)
    return int(np.bincount(named).argmax()) if named.size else ANY_SOURCE


def _looking_part(
    code: int,
    far: np.ndarray,
    queried: np.ndarray,
    votes: np.ndarray,
    source: int,
    features: Rows,
    min_size: int,
) -> tuple[np.ndarray, float] | None:
    """The part of class ``code``'s far samples ``far`` that looks like class ``source`` in the
    input (``ANY_SOURCE``: like any other class), and the share of its queried members that do.

    ``votes`` are what the input neighbours say of the far samples ``queried``. The part is the
    far samples nearer, in the standardised ``features``, to the centroid of the queried ones
    that look like the source than to the centroid of the other queried ones: the input names a
    sample, the features (where a trigger's poisons sit together) gather its like. ``None``
    when fewer than ``min_size`` samples count at any step.
    """
    looks = votes != code if source == ANY_SOURCE else votes == source
    if int(looks.sum()) < min_size:
        return None
    if looks.all() and queried.size == far.size:
        # every far sample looks like the source (a blend's poisons fill the far group): no
        # other centroid to weigh against, the far group is the part
        return far, 1.0
    rows = features.take(far).astype(np.float64)
    spread = rows.std(axis=0)
    rows = (rows - rows.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    where = np.searchsorted(far, queried)
    centre = rows[where[looks]].mean(axis=0)
    others = where[~looks]
    elsewhere = rows[others].mean(axis=0) if others.size else rows.mean(axis=0)
    nearer = ((rows - centre) ** 2).sum(axis=1) < ((rows - elsewhere) ** 2).sum(axis=1)
    if int(nearer.sum()) < min_size:
        return None  # e.g. copies: the two centroids coincide
    group = far[nearer]
    # how much of the part itself looks like the source (its members among those queried)
    inside = np.isin(queried, group)
    if int(inside.sum()) < min_size:
        return None
    return group, float(np.mean(looks[inside]))


def _typical_core_margin(evidence: list[ClassEvidence]) -> float:
    """The median class core's mean margin (NaN when no core was measured)."""
    cores = [item.core_margin for item in evidence if np.isfinite(item.core_margin)]
    return float(np.median(cores)) if cores else float("nan")


def _mixed_origin_cluster(
    code: int,
    members: np.ndarray,
    split: ClassSplit,
    probabilities: Rows,
    margin: Rows,
    typical: float,
    n_classes: int,
    settings: DecisionSettings,
) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The cluster of class ``code``'s two-means split whose runner-up classes are more varied
    than the other's by ``min_entropy_gain``, the other cluster, and what was measured of them
    as :class:`ClassEvidence` fields (the cluster in place of the far group, the other in place
    of the core); ``None`` when neither is (or a cluster is smaller than ``min_group_share`` of
    the class)."""
    in_minority = np.isin(members, split.minority)
    smallest = max(settings.min_group_size, settings.min_group_share * members.size)
    if min(in_minority.sum(), (~in_minority).sum()) < smallest:
        return None
    runner_up = _runner_up(probabilities.take(members), code)
    entropies = [_entropy(runner_up[mask], n_classes) for mask in (in_minority, ~in_minority)]
    varied = in_minority if entropies[0] >= entropies[1] else ~in_minority
    gain = abs(entropies[0] - entropies[1])
    if gain < settings.min_entropy_gain:
        return None
    aum = _area_under_margin(margin, members)
    far_margin, core_margin = float(aum[varied].mean()), float(aum[~varied].mean())
    measured = {
        "far_entropy": _entropy(runner_up[varied], n_classes),
        "core_entropy": _entropy(runner_up[~varied], n_classes),
        "far_margin": far_margin,
        "core_margin": core_margin,
        "typical_margin": typical,
        "easy": bool(far_margin >= min(core_margin, typical)),
    }
    return members[varied], members[~varied], measured


def _most_probable(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities).argmax(axis=1)


def _group_apart(
    ratio: np.ndarray,
    members: np.ndarray,
    code: int,
    oos_probabilities: Rows | None,
    *,
    search_from: float,
    tail_share: float,
    settings: DecisionSettings,
) -> tuple[TailGap | None, float]:
    """The class's strongest tail gap (groups beyond ``search_from``) and the share of the group
    above it that out-of-sample heads put in the class (NaN without a gap)."""
    gap = tail_gap(
        ratio,
        far_ratio=search_from,
        core_ratio=settings.core_ratio,
        min_group_size=settings.min_group_size,
        tail_share=tail_share,
    )
    if gap is None:
        return None, float("nan")
    group = members[ratio >= gap.upper]
    return gap, _label_agreement(oos_probabilities, group, code)


def _label_agreement(oos_probabilities: Rows | None, group: np.ndarray, code: int) -> float:
    """Share of ``group`` that a model which never saw them puts in class ``code`` (1 without
    out-of-sample probabilities: no evidence against the label)."""
    if oos_probabilities is None or group.size == 0:
        return 1.0
    return float(np.mean(oos_probabilities.take(group).argmax(axis=1) == code))


def _area_under_margin(margin: Rows, members: np.ndarray) -> np.ndarray:
    """Mean margin over the epochs of the samples ``members`` (0 without records)."""
    if margin.ndim < 2 or margin.shape[1] == 0:
        return np.zeros(members.size)
    return margin.take(members).mean(axis=1)


def _confident(thresholds: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    return confident_classes(probabilities, thresholds)


def _mislabelled(
    noise_rate: float, n_classes: int, probabilities: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    return likely_mislabelled(probabilities, labels, noise_rate, n_classes)


def _given(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return probabilities[np.arange(labels.shape[0]), labels]


def _runner_up(probabilities: np.ndarray, code: int) -> np.ndarray:
    """The most probable class other than ``code``, for samples labelled ``code``."""
    others = np.array(probabilities, dtype=np.float64, copy=True)
    others[:, code] = -np.inf
    return others.argmax(axis=1)


def _entropy(classes: np.ndarray, n_classes: int) -> float:
    """Entropy of the class histogram, normalised by ``log(K - 1)`` (runner-ups exclude one)."""
    counts = np.bincount(classes, minlength=n_classes)
    share = counts[counts > 0] / classes.size
    # + 0.0: one class alone gives -0.0, which a reason would print as "-0.00"
    return float(-(share * np.log(share)).sum() / np.log(max(n_classes - 1, 2))) + 0.0


def _far_evidence(far_ratio: float, ratio: np.ndarray) -> np.ndarray:
    return ratio / (ratio + far_ratio)


def _fused_score(
    flagged: np.ndarray,
    distance_ratio: Rows | None,
    oos_probabilities: Rows | None,
    word_drop: np.ndarray | None,
    labels: np.ndarray,
    settings: DecisionSettings,
) -> np.ndarray:
    """Score in [0, 1]: at least 0.5 exactly for flagged samples; ordered by evidence inside
    (for texts also by how far deleting a word set drops the margin of the given label)."""
    n = labels.shape[0]
    evidence = np.zeros(n)
    if word_drop is not None:
        evidence = np.maximum(evidence, word_drop / (1.0 + word_drop))
    if distance_ratio is not None:
        far = partial(_far_evidence, settings.far_ratio)
        evidence = np.maximum(evidence, distance_ratio.map(far))
    if oos_probabilities is not None:
        given = oos_probabilities.map(_given, labels)
        evidence = np.maximum(evidence, 1.0 - given)
    evidence = np.clip(np.nan_to_num(evidence), 0.0, 1.0)
    return np.where(flagged, 0.5 + 0.5 * evidence, 0.4999 * evidence)
