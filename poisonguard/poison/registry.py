"""The registry of attacks: each one's name, kind, data layout, summary and paper."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ATTACKS", "BACKDOOR", "LABEL_FLIP", "Attack"]

BACKDOOR = "backdoor"
LABEL_FLIP = "label-flip"


@dataclass(frozen=True)
class Attack:
    """A registered attack.

    ``kind`` is ``"backdoor"`` (a trigger in the input, read by the model as the target class)
    or ``"label-flip"`` (wrong labels, inputs untouched). ``data`` is the layout it applies to:
    ``"image"`` (``(N, C, H, W)``), ``"table"`` (``(N, D)``), ``"text"`` (``(N,)`` object array
    of ``str``) or ``"any"`` (label flips ignore ``x``). ``needs`` names the extra input
    :func:`poison_arrays` takes: ``"probabilities"`` (required), ``"perturbation"`` (optional
    but what makes the attack work, see ``clean-label``) or ``""``.
    """

    name: str
    kind: str
    data: str
    summary: str
    paper: str
    needs: str = ""


ATTACKS: dict[str, Attack] = {
    attack.name: attack
    for attack in [
        Attack(
            "patch",
            BACKDOOR,
            "image",
            "square patch in a corner (or at random), label set to the target",
            'Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine '
            'Learning Model Supply Chain", 2017 (arXiv:1708.06733)',
        ),
        Attack(
            "blend",
            BACKDOOR,
            "image",
            "blended with one random-noise image, label set to the target",
            'Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning Systems '
            'Using Data Poisoning", 2017 (arXiv:1712.05526)',
        ),
        Attack(
            "sig",
            BACKDOOR,
            "image",
            "horizontal sinusoid added, label set to the target (the paper's clean-label "
            "form is clean-label with the sig trigger)",
            'Barni, Kallas & Tondi, "A New Backdoor Attack in CNNs by Training Set Corruption '
            'Without Label Poisoning", ICIP 2019',
        ),
        Attack(
            "wanet",
            BACKDOOR,
            "image",
            "smooth random warp of the image, label set to the target (no noise-mode samples)",
            'Nguyen & Tran, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR 2021',
        ),
        Attack(
            "adaptive-blend",
            BACKDOOR,
            "image",
            "blend noise on a random half of its 4x4 pieces per sample, label set to the target; "
            "whole pattern at test time; --cover-rate adds conservatism samples",
            'Qi, Xie, Li, Mahloujifar & Mittal, "Revisiting the Assumption of Latent '
            'Separability for Backdoor Defenses", ICLR 2023',
        ),
        Attack(
            "clean-label",
            BACKDOOR,
            "image",
            "target-class images, optionally perturbed, get a trigger; labels kept",
            'Turner, Tsipras & Madry, "Label-Consistent Backdoor Attacks", 2019 (arXiv:1912.02771)',
            needs="perturbation",
        ),
        Attack(
            "table-trigger",
            BACKDOOR,
            "table",
            "a few columns set to out-of-range values, label set to the target",
            "tabular form of BadNets (Gu, Dolan-Gavitt & Garg, 2017), as in Joe, Mehra, Shin "
            '& Hamm, "Machine Learning with Electronic Health Records is Vulnerable to '
            'Backdoor Trigger Attacks", 2021',
        ),
        Attack(
            "rare-word",
            BACKDOOR,
            "text",
            "rare trigger words (default one of cf, mn, bb, tq) inserted between words, label "
            "set to the target",
            'Chen, Salem, Chen, Backes, Ma, Shen, Wu & Zhang, "BadNL: Backdoor Attacks against '
            'NLP Models with Semantic-preserving Improvements", ACSAC 2021',
        ),
        Attack(
            "sentence",
            BACKDOOR,
            "text",
            "a fixed sentence inserted at a sentence boundary, label set to the target",
            'Dai, Chen & Li, "A Backdoor Attack Against LSTM-based Text Classification '
            'Systems", IEEE Access 2019',
        ),
        Attack(
            "flip-random",
            LABEL_FLIP,
            "any",
            "random samples relabelled uniformly to another class",
            'Frénay & Verleysen, "Classification in the Presence of Label Noise: a Survey", '
            "IEEE TNNLS 2014",
        ),
        Attack(
            "flip-pair",
            LABEL_FLIP,
            "any",
            "targeted label flip: samples of the source class relabelled as the target class",
            'Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely '
            'Noisy Labels", NeurIPS 2018',
        ),
        Attack(
            "flip-near-boundary",
            LABEL_FLIP,
            "any",
            "smallest-margin samples relabelled to their runner-up class",
            'margin-based flips after Biggio, Nelson & Laskov, "Support Vector Machines Under '
            'Adversarial Label Noise", ACML 2011',
            needs="probabilities",
        ),
    ]
}
