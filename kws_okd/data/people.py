"""Real people saying the Speech Commands words: the project's real development set.

249 clips of Speech Commands v0.01 by 34 speakers (Pete Warden, Google, CC BY 4.0),
vendored in ``people_dev/`` (its README and LICENSE). None of these speakers is in the
v0.02 canonical test set, the real-speech benchmark of the 12-class task.

The speakers are split three ways, once and for all, so that every figure reported
comes from people nothing was trained or chosen on:

- ``train``  (about half the keyword clips): labelled training clips for the teacher's
  head and the students (``data.people_weight``);
- ``select`` (about a quarter): what the ``_unknown_`` calibration
  (:mod:`kws_okd.train.calibrate`) is chosen on;
- ``report`` (the rest): the ``real`` column of every report, never used for anything else.

A speaker's role depends on the clip list alone (:func:`speaker_roles`), so it is the
same on every machine and for every run.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from kws_okd.data.manifest import write_manifest
from kws_okd.data.words import KEYWORDS_12, UNKNOWN
from kws_okd.errors import DataError

PEOPLE_DIR = Path(__file__).with_name("people_dev")
ROLES = {"train": 0.5, "select": 0.25, "report": 0.25}
DOMAIN = "people"
ATTRIBUTION = "Speech Commands v0.01, Pete Warden, Google, CC BY 4.0"


def scan_people(root=PEOPLE_DIR) -> list[dict]:
    """Every clip of a Speech Commands folder (``<word>/<speaker>_nohash_<n>.wav``) as
    ``{"wav", "word", "speaker", "name"}``, sorted by path. A file that is not a readable
    16-kHz mono WAV of at most 1 s gets one error naming it."""
    import soundfile as sf
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: the real development set is missing (a folder of <word>/*.wav)")
    clips = []
    for wav in sorted(root.glob("*/*.wav")):
        if wav.parent.name.startswith("_"):
            continue
        try:
            info = sf.info(str(wav))
        except Exception as e:   # soundfile raises its own and OS errors
            raise DataError(f"{wav}: unreadable development clip ({e})") from None
        if info.samplerate != 16000 or info.channels != 1 or info.frames > 16000 or info.frames == 0:
            raise DataError(f"{wav}: development clips are 16-kHz mono, at most 1 s; this one is "
                            f"{info.samplerate} Hz, {info.channels} channel(s), {info.frames} samples")
        speaker = wav.stem.split("_nohash_")[0]
        clips.append(dict(wav=str(wav.resolve()), word=wav.parent.name, speaker=speaker,
                          name=f"{wav.parent.name}/{wav.name}"))
    if not clips:
        raise DataError(f"{root}: no <word>/*.wav clips in the real development set")
    return clips


def _rank(speaker: str) -> str:
    return hashlib.sha1(speaker.encode()).hexdigest()


def speaker_roles(clips: list[dict], roles: dict = ROLES) -> dict[str, str]:
    """Speaker -> role. Speakers go, most keyword clips first (ties by a hash of the id),
    to the role furthest below its share of the keyword clips, then of all clips; the
    split depends on the clip list alone."""
    kw = Counter(c["speaker"] for c in clips if c["word"] in KEYWORDS_12)
    every = Counter(c["speaker"] for c in clips)
    n_kw, n_all = max(1, sum(kw.values())), max(1, sum(every.values()))
    have = {r: [0, 0] for r in roles}
    out = {}
    for spk in sorted(every, key=lambda s: (-kw[s], -every[s], _rank(s))):
        role = min(roles, key=lambda r: (have[r][0] / n_kw - roles[r] if kw[spk] else 0.0,
                                         have[r][1] / n_all - roles[r], list(roles).index(r)))
        out[spk] = role
        have[role][0] += kw[spk]
        have[role][1] += every[spk]
    return out


def people_rows(classes: list[str], role: str, root=PEOPLE_DIR) -> list[dict]:
    """Manifest rows of the clips of one role's speakers, labelled by ``classes`` (a word
    not in them is ``_unknown_`` when there is such a class, else left out)."""
    if role not in ROLES:
        raise DataError(f"unknown development-set role {role!r}; known: {sorted(ROLES)}")
    clips = scan_people(root)
    roles = speaker_roles(clips)
    index = {c: i for i, c in enumerate(classes)}
    rows = []
    for c in clips:
        if roles[c["speaker"]] != role:
            continue
        word = c["word"] if c["word"] in index else UNKNOWN
        if word not in index:
            continue
        rows.append(dict(ID=f"{DOMAIN}/{c['name']}", wav=c["wav"], duration=1.0, spk_id=c["speaker"],
                         domain=DOMAIN, word=word, label=index[word], offset=0))
    return rows


def repeated(rows: list[dict], times: int) -> list[dict]:
    """Each row ``times`` times, the copies told apart by ``#k`` on their IDs (rows as
    they are when ``times`` is 1)."""
    if times == 1:
        return list(rows)
    return [dict(r, ID=f"{r['ID']}#{k}") for r in rows for k in range(times)]


def _role_rows(classes: list[str], role: str, root=PEOPLE_DIR) -> list[dict]:
    """:func:`people_rows`, refusing a role with no clip for ``classes``."""
    rows = people_rows(classes, role, root)
    if not rows:
        raise DataError(f"{root}: no development clip of role {role!r} for the classes {classes}")
    return rows


def write_people_manifest(path, classes: list[str], role: str, repeat: int = 1, root=PEOPLE_DIR) -> Path:
    """Write one role's clips as a manifest (each row ``repeat`` times); return its path."""
    write_manifest(path, repeated(_role_rows(classes, role, root), repeat))
    return Path(path)


def role_summary(root=PEOPLE_DIR) -> dict:
    """Per role: speakers, clips and keyword clips (for reports and the docs)."""
    clips = scan_people(root)
    roles = speaker_roles(clips)
    out = {}
    for r in ROLES:
        mine = [c for c in clips if roles[c["speaker"]] == r]
        out[r] = dict(speakers=len({c["speaker"] for c in mine}), clips=len(mine),
                      keyword_clips=sum(c["word"] in KEYWORDS_12 for c in mine))
    return out


def people_manifest(manifest_dir, role: str) -> Path:
    """``<manifest_dir>/people_<role>.csv``: one role's clips labelled by the folder's
    ``classes.txt``, written when missing or out of date."""
    from kws_okd.data.manifest import read_classes, read_manifest
    manifest_dir = Path(manifest_dir)
    path = manifest_dir / f"people_{role}.csv"
    rows = _role_rows(read_classes(manifest_dir / "classes.txt"), role)
    try:
        if [(r["ID"], r["label"]) for r in read_manifest(path)] == [(r["ID"], r["label"]) for r in rows]:
            return path
    except DataError:
        pass   # missing or unreadable: written below
    write_manifest(path, rows)
    return path
