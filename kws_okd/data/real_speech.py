"""Real human speech from Debian packages, kept apart from the synthetic corpus.

Two uses, never mixed:

* :func:`build_real_dev` - a small labelled *evaluation-only* set of real recordings of
  GSC words (alsa-utils' channel-test voice, Asterisk's "Allison" prompts). It is never
  used for training or model selection; that is why the alsa/asterisk files are also
  refused as unlabelled training audio below.
* :func:`load_real_windows` - unlabelled 1-s windows of real voices (by default the
  klettres-data letter/syllable recordings in ~17 languages) for training as
  out-of-distribution input, with a file-disjoint held-out part.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kws_okd.audio.io import fix_length, read_audio, write_audio
from kws_okd.data.manifest import read_manifest, write_manifest
from kws_okd.data.words import GSC_V2_WORDS, UNKNOWN
from kws_okd.errors import AudioError, ConfigError, DataError
from kws_okd.utils.atomic import atomic_path, write_json

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")

# ---------------------------------------------------------------------------
# Energy segmentation
# ---------------------------------------------------------------------------


def voiced_segments(x: np.ndarray, sr: int, frame_s: float = 0.01, rel_db: float = 30.0,
                    floor_dbfs: float = -60.0, min_pause_s: float = 0.2,
                    min_seg_s: float = 0.05) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` sample ranges of speech, by 10-ms frame energy.

    A frame is voiced when it is within ``rel_db`` of the loudest frame (and above an
    absolute floor, so a silent file has no segment). Gaps shorter than ``min_pause_s``
    are bridged: stop closures and the silent gap before a final /t/ release last
    < 0.15 s in the alsa/asterisk prompts, pauses between words >= 0.22 s. Segments
    shorter than ``min_seg_s`` (clicks, isolated releases) are dropped.
    """
    hop = max(1, int(round(frame_s * sr)))
    n = len(x) // hop
    if n == 0:
        return []
    frames = x[:n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10((frames ** 2).mean(axis=1) + 1e-12)
    voiced = (db > db.max() - rel_db) & (db > floor_dbfs)
    segs: list[list[int]] = []
    for i in np.flatnonzero(voiced):
        if segs and i - segs[-1][1] < min_pause_s / frame_s:
            segs[-1][1] = i + 1  # bridge a short gap
        else:
            segs.append([i, i + 1])
    return [(a * hop, b * hop) for a, b in segs if (b - a) * frame_s >= min_seg_s]


def last_word(x: np.ndarray, sr: int, pad_before_s: float = 0.05, pad_after_s: float = 0.1,
              **kw) -> np.ndarray:
    """The last voiced segment after the last pause ("Front *Left*").

    Segments use the robust 30-dB threshold (the pause before the word stays clear);
    the longer pad after the word keeps a final /t/ release that falls below it.
    """
    segs = voiced_segments(x, sr, **kw)
    if not segs:
        return x[:0]
    a, b = segs[-1]
    return x[max(0, a - int(pad_before_s * sr)):b + int(pad_after_s * sr)]


def trim_silence(x: np.ndarray, sr: int, pad_s: float = 0.05, rel_db: float = 40.0,
                 **kw) -> np.ndarray:
    """From the first voiced frame to the last one, padded a little. The threshold is
    40 dB under the peak, not 30, so weak fricatives ("/s/ix", "/f/our") stay in."""
    segs = voiced_segments(x, sr, rel_db=rel_db, **kw)
    if not segs:
        return x[:0]
    pad = int(pad_s * sr)
    return x[max(0, segs[0][0] - pad):segs[-1][1] + pad]


# ---------------------------------------------------------------------------
# Real-speech development set (evaluation only)
# ---------------------------------------------------------------------------

ALSA_DIR = Path("/usr/share/sounds/alsa")
# alsa-utils' speaker-test voice says "<position> <side>"; the side is a GSC word.
ALSA_CLIPS = {f"{pos}_{side}.wav": side.lower()
              for pos in ("Front", "Rear", "Side") for side in ("Left", "Right")}
# Debian's asterisk-core-sounds-en-wav installs here; some setups add an "en" link.
ASTERISK_DIRS = (Path("/usr/share/asterisk/sounds/en_US_f_Allison"),
                 Path("/usr/share/asterisk/sounds/en"))
# Prompts whose whole transcript (Asterisk's core-sounds-en.txt) is one GSC word.
# Near misses left out on purpose: vm-for "for" (not "four"), digits/oh "oh" (not
# "zero"), digits/h-4 "fourth", phonetic/9_p "niner".
ASTERISK_CLIPS = {**{f"digits/{i}.wav": w for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))},
    "vm-no.wav": "no"}
# The NATO alphabet, one word per prompt: real speech that is no GSC word. Used as
# ``_unknown_`` clips when the classes have one (the 12-class task).
NATO = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
        "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu")
ASTERISK_NON_KEYWORDS = {f"phonetic/{w[0]}_p.wav": w for w in NATO}
DEV_PACKAGES = "alsa-utils asterisk-core-sounds-en-wav"
_DEV_VERSION = 3  # bump when the cutting changes, to rebuild old dev sets


def _dev_sources(with_unknown: bool = False) -> list[tuple[str, str, Path, str, str]]:
    """``(domain, spk_id, path, word, clip name)`` for every installed source file (and
    the non-keyword prompts too when ``with_unknown``)."""
    out = []
    for name, word in sorted(ALSA_CLIPS.items()):
        if (ALSA_DIR / name).is_file():
            out.append(("real_alsa", "alsa-utils", ALSA_DIR / name, word, Path(name).stem))
    seen = set()
    clips = {**ASTERISK_CLIPS, **(ASTERISK_NON_KEYWORDS if with_unknown else {})}
    for d in ASTERISK_DIRS:
        for name, word in sorted(clips.items()):
            p = d / name
            if p.is_file() and p.resolve() not in seen:
                seen.add(p.resolve())
                out.append(("real_asterisk", "asterisk-core-sounds-en", p, word,
                            name.removesuffix(".wav").replace("/", "_")))
    return out


def file_signature(p: Path) -> list:
    """Path, size and modification time: what decides whether a file built from ``p`` is stale."""
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def build_real_dev(out_dir, classes: list[str], progress: bool = False) -> Path:
    """Write ``out_dir/real_dev.csv`` and its 16-kHz 1-s clips; return the CSV path.

    Evaluation only. ``label`` is the word's index in ``classes``; words not in
    ``classes`` are ``_unknown_`` when there is such a class (the NATO-alphabet prompts
    join them then), else left out. Reuses a complete earlier build (``real_dev.json``,
    written last, matches the classes and source files).
    """
    out_dir = Path(out_dir)
    csv, stamp, clip_dir = out_dir / "real_dev.csv", out_dir / "real_dev.json", out_dir / "real_dev"
    index = {c: i for i, c in enumerate(classes)}
    sources = _dev_sources(with_unknown=UNKNOWN in index)
    if not sources:
        raise DataError(f"no real speech for the dev set: neither {ALSA_DIR} (alsa-utils) nor "
                        f"{ASTERISK_DIRS[0]} (asterisk-core-sounds-en-wav) is installed; "
                        f"install them with: sudo apt-get install -y --no-install-recommends "
                        f"{DEV_PACKAGES}")
    sources = [s for s in sources if s[3] in index or UNKNOWN in index]
    if not sources:
        words = sorted(set(ALSA_CLIPS.values()) | set(ASTERISK_CLIPS.values()))
        raise DataError(f"none of the real dev words {words} is in the class list {list(classes)}")
    key = hashlib.sha1(json.dumps([_DEV_VERSION, list(classes), [file_signature(s[2]) for s in sources]])
                       .encode()).hexdigest()
    if stamp.exists() and csv.exists():
        try:
            same = json.loads(stamp.read_text()).get("key") == key
            if same and all(Path(r["wav"]).exists() for r in read_manifest(csv)):
                return csv
        except (ValueError, DataError):
            pass  # unreadable stamp or manifest: rebuild
    # Stamp first out, so a build killed half-way is never taken for a complete one.
    stamp.unlink(missing_ok=True)
    shutil.rmtree(clip_dir, ignore_errors=True)

    sr, n = 16000, 16000
    rows, cut_s = [], {}
    for domain, spk, path, word, name in sources:
        x = read_audio(path, sr, warn=False)  # asterisk is 8 kHz: resample_poly to 16 kHz
        # alsa: cut the final word; asterisk: the whole (single-word) prompt, silence trimmed.
        seg = last_word(x, sr) if domain == "real_alsa" else trim_silence(x, sr)
        secs = len(seg) / sr
        if not 0.2 <= secs <= 0.9 and domain == "real_alsa":
            # The cut failed (no pause found, or a click): better no clip than a wrong one.
            warnings.warn(f"{path}: last-word cut is {secs:.2f} s (expected 0.2-0.9 s); skipped",
                          stacklevel=2)
            continue
        if len(seg) == 0:
            warnings.warn(f"{path}: no speech found; skipped", stacklevel=2)
            continue
        clip_id = f"{domain.removeprefix('real_')}/{name}"
        rel = f"real_dev/{clip_id}.wav"
        write_audio(out_dir / rel, fix_length(seg, n), sr)  # centred; centre-cropped if > 1 s
        cut_s[clip_id] = round(secs, 3)
        label = index.get(word, index.get(UNKNOWN))
        rows.append(dict(ID=clip_id, wav=rel, duration=1.0, spk_id=spk, domain=domain,
                         word=word if word in index else UNKNOWN, label=label, offset=0))
        if progress:
            print(f"real dev: {clip_id:24s} {word:6s} cut {secs:.2f} s")
    if not rows:
        raise DataError(f"{out_dir}: no real dev clip could be cut from "
                        f"{[str(s[2]) for s in sources]}")
    write_manifest(csv, rows)
    counts = real_dev_summary(csv)
    write_json(stamp, {"key": key, "counts": counts, "cut_seconds": cut_s})
    if progress:
        print(f"real dev: {len(rows)} clips -> {csv}: {counts}")
    return csv


def real_dev_summary(csv) -> dict:
    """``{domain: {word: clips}}`` of a real dev manifest."""
    out: dict[str, dict[str, int]] = {}
    for r in read_manifest(csv):
        d = out.setdefault(r["domain"], {})
        d[r["word"]] = d.get(r["word"], 0) + 1
    return out


# ---------------------------------------------------------------------------
# Unlabelled real audio windows (training x_ood)
# ---------------------------------------------------------------------------

KLETTRES_ROOT = Path("/usr/share/klettres")
# klettres recordings that say a GSC word, or something a listener (or a model) would
# hardly tell from one; found from the file names and each language's sounds.xml.
# They must not be "out of distribution" examples.
KLETTRES_KEYWORD_LIKE = {
    "dog": ("en/syllab/dog", "en_GB/syllab/dog"),
    "no": ("en/syllab/no", "en_GB/syllab/no", "es/syllab/no", "it/syllab/no", "pt_BR/syllab/no",
           "ru/syllab/no", "ml/syllab/no", "ml/syllab/noo", "cs/syllab/ad-8"),
    "go": ("es/syllab/go", "it/syllab/go", "pt_BR/syllab/go", "ml/syllab/go", "ml/syllab/gooo"),
    "two": ("es/syllab/tu", "it/syllab/tu", "pt_BR/syllab/tu", "ml/syllab/tu", "ml/syllab/tuu",
            "ml/syllab/too", "cs/syllab/ad-16"),
    "four": ("es/syllab/fo", "it/syllab/fo", "pt_BR/syllab/fo", "ml/syllab/fo", "ml/syllab/foo",
             "tn/syllab/fo", "da/syllab/ad-9"),
    "up": ("da/syllab/ad-21", "nl/syllab/ad-20"),  # "OP"
    "house": ("de/syllab/haus", "nds/syllab/huus"),
    "wow": ("ml/syllab/vau", "uk/syllab/vov"),
}
_KEYWORD_LIKE = {p for ps in KLETTRES_KEYWORD_LIKE.values() for p in ps}
HEDGEWARS_VOICES = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
# hedgewars-data voice lines (file stems, lowercased, in every pack) named for a command
# word, which the line says in some wording, or likely to sound like one: never unlabelled
# or "_unknown_" training audio, and left out of the people-talking recording.
HEDGEWARS_KEYWORD_LIKE = {"yessir": "yes", "nooo": "no", "enemydown": "down", "comeonthen": "on",
                          "ooff1": "off", "ooff2": "off", "ooff3": "off", "hurry": "up"}
# Evaluation-only sources: never training audio, whatever folder is given.
_RESERVED = (ALSA_DIR, *ASTERISK_DIRS)
_CACHE_VERSION = 3


def talk_packs(role: str, root=HEDGEWARS_VOICES) -> list[Path]:
    """hedgewars-data's voice packs (people talking) in two halves, alternately by name:
    ``train`` packs may be real-audio ``x_ood`` (``real_audio.talk``), ``valid`` packs are
    then the people-talking threshold recording, so that its false alarms come from
    voices never trained on. None when the package is missing."""
    if role not in ("train", "valid"):
        raise ConfigError(f"talk pack role {role!r}: expected 'train' or 'valid'")
    root = Path(root)
    packs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return packs[0::2] if role == "train" else packs[1::2]


def _package_folders(root: Path, package: str, needed_by: str) -> list[Path]:
    """The folders under a Debian package's ``root`` that hold recordings (one folder a
    language), or an error naming the package and how to install it."""
    hint = f"install it with: sudo apt-get install -y --no-install-recommends {package}"
    if not root.is_dir():
        raise DataError(f"{root}: missing; {needed_by} need the Debian package {package}; {hint}")
    folders = sorted(d for d in root.iterdir()
                     if d.is_dir() and any(p.suffix.lower() in AUDIO_EXTS for p in d.rglob("*")))
    if not folders:
        raise DataError(f"{root}: no recordings found ({package} incomplete?); {hint}")
    return folders


def default_real_audio_folders() -> list[Path]:
    """klettres-data's language folders that hold recordings (one folder a language)."""
    return _package_folders(KLETTRES_ROOT, "klettres-data", "the real-audio windows")


def _excluded(p: Path) -> bool:
    """GSC-word recordings (by name), hedgewars lines named for one, and the evaluation-only sources."""
    stem = p.stem.lower()
    if stem in GSC_V2_WORDS or stem in HEDGEWARS_KEYWORD_LIKE \
            or "/".join(p.parts[-3:-1] + (p.stem,)) in _KEYWORD_LIKE:
        return True
    r = p.resolve()
    return any(r.is_relative_to(d.resolve()) for d in _RESERVED if d.exists())


def _list_audio(folders) -> tuple[list[tuple[Path, str]], int]:
    """``[(file, label)]`` (label: folder name + first subfolder) and the excluded count."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise DataError("no real-audio folder given")
    files, seen, n_excl = [], set(), 0
    for folder in folders:
        if not folder.exists():
            raise DataError(f"{folder}: real-audio folder does not exist")
        if not folder.is_dir():
            raise DataError(f"{folder}: is not a folder")
        found = sorted(p for p in folder.rglob("*")
                       if p.suffix.lower() in AUDIO_EXTS and p.is_file())
        if not found:
            raise DataError(f"{folder}: real-audio folder has no audio files "
                            f"({' '.join(AUDIO_EXTS)}, searched recursively)")
        kept = [p for p in found if not _excluded(p)]
        n_excl += len(found) - len(kept)
        if not kept:
            raise DataError(f"{folder}: all {len(found)} audio files are excluded (GSC keywords "
                            f"or evaluation-only alsa/asterisk sounds)")
        for p in kept:
            if p.resolve() in seen:  # nested or repeated folders
                continue
            seen.add(p.resolve())
            rel = p.relative_to(folder).parts
            files.append((p, folder.name + ("/" + rel[0] if len(rel) > 1 else "")))
    # One order whatever the folders' order: the cache and the held-out draw depend on it.
    return sorted(files, key=lambda f: str(f[0])), n_excl


def _windows(x: np.ndarray, n: int, hop: int) -> np.ndarray:
    """1-s windows of one recording: a short one centred/padded into one window; a long
    one cut every ``hop`` samples, the last window aligned to the end so no tail is lost
    (``ceil((len - n) / hop) + 1`` windows)."""
    if len(x) <= n:
        return fix_length(x, n)[None]
    starts = list(range(0, len(x) - n, hop)) + [len(x) - n]
    return np.stack([x[s:s + n] for s in starts])


# Vorbis overshoot on full-scale speech reaches ~1.6; a larger peak is a broken file
# (klettres' Setswana recordings decode at up to 60x full scale: overdriven float input).
MAX_PEAK = 2.0


def _decode(path: Path, sample_rate: int, n: int, hop: int, silence_dbfs: float):
    x = read_audio(path, sample_rate, warn=False)
    peak = float(np.abs(x).max())
    if peak > MAX_PEAK:
        raise AudioError(path, f"decoded peak {peak:.1f} x full scale (> {MAX_PEAK:g}): "
                               "broken encoding")
    w = _windows(x, n, hop)
    rms_db = 10 * np.log10((w.astype(np.float64) ** 2).mean(axis=1) + 1e-20)
    return w[rms_db >= silence_dbfs], len(x) / sample_rate


def _build_cache(files, folders, sample_rate, n, hop, silence_dbfs, progress) -> dict:
    def job(item):
        try:
            return _decode(item[0], sample_rate, n, hop, silence_dbfs)
        except AudioError as e:
            return e
    with ThreadPoolExecutor(min(8, os.cpu_count() or 2)) as pool:
        results = list(tqdm(pool.map(job, files), total=len(files), disable=not progress,
                            desc="decoding real audio", unit="file", leave=False))
    failed = {}
    for (p, _), r in zip(files, results):
        if isinstance(r, AudioError):
            failed[str(p)] = r.problem
            warnings.warn(f"{p}: skipped ({r.problem})", stacklevel=3)
    for folder in folders:  # a folder none of whose files decodes is a user error
        mine = [(p, r) for (p, _), r in zip(files, results) if p.is_relative_to(folder)]
        if mine and all(isinstance(r, AudioError) for _, r in mine):
            raise DataError(f"{folder}: none of its {len(mine)} audio files could be decoded "
                            f"(first: {mine[0][0].name}: {mine[0][1].problem})")
    ok = [(i, r) for i, r in enumerate(results) if not isinstance(r, AudioError)]
    wins = [w for _, (w, _) in ok]
    if sum(len(w) for w in wins) == 0:
        raise DataError(f"{', '.join(map(str, folders))}: no 1-s window louder than "
                        f"{silence_dbfs:g} dBFS RMS in {len(ok)} decoded files")
    # float16 halves the cache (relative rounding ~ -66 dB) without clipping.
    return dict(
        windows=torch.from_numpy(np.concatenate(wins).astype(np.float16)),
        file_index=torch.tensor(np.concatenate([np.full(len(w), i) for i, (w, _) in ok]),
                                dtype=torch.int64),
        files=[str(p) for p, _ in files], labels=[lab for _, lab in files],
        seconds=[0.0 if isinstance(r, AudioError) else float(r[1]) for r in results],
        failed=failed)


def _valid_cache(blob, key: str, files: list[str], n: int) -> bool:
    """A cache from an older build, a kill mid-write or a foreign file fails one of these."""
    if not isinstance(blob, dict):
        return False
    w, idx = blob.get("windows"), blob.get("file_index")
    return (blob.get("key") == key and blob.get("files") == files
            and isinstance(w, torch.Tensor) and w.dtype == torch.float16
            and w.ndim == 2 and w.shape[1] == n and isinstance(idx, torch.Tensor)
            and idx.shape == (w.shape[0],) and len(blob.get("seconds", ())) == len(files)
            and len(blob.get("labels", ())) == len(files) and isinstance(blob.get("failed"), dict)
            and (w.shape[0] == 0 or 0 <= int(idx.min()) <= int(idx.max()) < len(files)))


def load_real_windows(folders, cache_dir, sample_rate: int = 16000, window_s: float = 1.0,
                      holdout_frac: float = 0.2, seed: int = 0, progress: bool = False,
                      hop_s: float = 0.5, silence_dbfs: float = -50.0,
                      holdout_by: str = "file", return_info: bool = False):
    """``(train, heldout)`` float32 tensors ``[N, window]`` of real-audio windows.

    Every audio file under ``folders`` (recursive) is decoded, resampled and cut into
    windows once; windows quieter than ``silence_dbfs`` RMS are dropped; levels stay as
    recorded. The result is cached in ``cache_dir`` under a key of the files (path,
    size, mtime) and these settings. Held-out windows come from whole files
    (``holdout_by="file"``) or whole given folders (``"folder"``, e.g. unseen languages)
    drawn with ``seed``: never the same recording as a training window. With
    ``return_info=True`` a third item reports counts (files, windows, seconds, folders).
    """
    if holdout_by not in ("file", "folder"):
        raise ValueError(f"holdout_by must be 'file' or 'folder', got {holdout_by!r}")
    if not 0.0 <= holdout_frac < 1.0:
        raise ValueError(f"holdout_frac must be in [0, 1), got {holdout_frac}")
    folders = sorted({Path(f) for f in folders})  # the given order must not matter
    files, n_excluded = _list_audio(folders)
    n, hop = int(round(window_s * sample_rate)), int(round(hop_s * sample_rate))
    sig = [(str(p.resolve()),) + tuple(file_signature(p)[1:]) for p, _ in files]
    key = hashlib.sha1(json.dumps([_CACHE_VERSION, sorted(sig), sample_rate, n, hop, silence_dbfs])
                       .encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"real_windows_{key}.pt"

    blob, cached = None, False
    if cache.exists():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            cached = _valid_cache(blob, key, [str(p) for p, _ in files], n)
            if not cached:
                warnings.warn(f"{cache}: cache does not match its files/settings; rebuilding",
                              stacklevel=2)
        except Exception as e:  # truncated or garbage file (a kill mid-write, disk full)
            warnings.warn(f"{cache}: unreadable cache ({type(e).__name__}); rebuilding",
                          stacklevel=2)
    if not cached:
        blob = _build_cache(files, folders, sample_rate, n, hop, silence_dbfs, progress)
        blob["key"] = key
        with atomic_path(cache) as tmp:
            torch.save(blob, tmp)
    elif blob["failed"]:
        warnings.warn(f"{len(blob['failed'])} real-audio files skipped as unreadable or broken "
                      f"(e.g. {next(iter(blob['failed']))})", stacklevel=2)

    # Split by whole files or folders, among those that gave windows.
    idx = blob["file_index"].numpy()
    labels = blob["labels"]
    if holdout_by == "file":
        group_of = np.arange(len(files))
    else:
        owner = [next(i for i, f in enumerate(folders) if p.is_relative_to(f)) for p, _ in files]
        group_of = np.asarray(owner)
    groups = np.unique(group_of[np.unique(idx)]) if len(idx) else np.zeros(0, int)
    n_hold = int(round(holdout_frac * len(groups)))
    if holdout_frac > 0 and len(groups) >= 2:
        n_hold = min(max(n_hold, 1), len(groups) - 1)
    held_groups = np.random.default_rng(seed).permutation(groups)[:n_hold]
    held = np.isin(group_of[idx], held_groups)
    windows = blob["windows"]
    train, heldout = windows[~held].float(), windows[held].float()
    if not return_info:
        return train, heldout

    secs = np.asarray(blob["seconds"])
    per_folder: dict[str, dict] = {}
    for i, lab in enumerate(labels):
        d = per_folder.setdefault(lab, {"files": 0, "windows": 0, "seconds": 0.0})
        d["files"] += int(str(files[i][0]) not in blob["failed"])
        d["windows"] += int((idx == i).sum())
        d["seconds"] = round(d["seconds"] + float(secs[i]), 1)
    info = dict(folders=[str(f) for f in folders], files=len(files) - len(blob["failed"]),
                files_failed=len(blob["failed"]), files_excluded=n_excluded,
                files_with_windows=int(len(np.unique(idx))), seconds=round(float(secs.sum()), 1),
                windows=int(len(idx)), train_windows=int(len(train)),
                heldout_windows=int(len(heldout)),
                holdout_by=holdout_by,
                heldout_files=int(len(np.unique(idx[held]))),
                heldout_folders=[str(folders[g]) for g in sorted(held_groups)]
                if holdout_by == "folder" else None,
                per_folder=per_folder, cache=str(cache), cache_hit=cached)
    return train, heldout, info
