"""Write the hostile audio files and show what kws-okd does with each.

    python tools/hostile_inputs.py [--out /tmp/hostile]
"""
import argparse
import warnings

from kws_okd.audio.io import read_audio
from kws_okd.data.hostile import make_hostile_files
from kws_okd.errors import AudioError


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="/tmp/kws_okd_hostile")
    args = ap.parse_args()
    print("| file | outcome | message |\n|---|---|---|")
    for name, path in sorted(make_hostile_files(args.out).items()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                x = read_audio(path)
                outcome = f"read, {len(x)} samples"
                msg = "; ".join(str(w.message) for w in caught) or "-"
            except AudioError as e:
                outcome, msg = "refused", str(e)
        print(f"| {name} | {outcome} | {msg} |")


if __name__ == "__main__":
    main()
