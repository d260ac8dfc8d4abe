#!/usr/bin/env bash
# Install the Debian packages kws-okd uses, only if something is missing.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v flite >/dev/null || need+=(flite)
# Festival (kws_okd.data.tts.Festival) and its English voices: two diphone voices
# (kal, ked) and one HTS voice (slt). About 11 MB to download.
command -v text2wave >/dev/null || need+=(festival)
FV=/usr/share/festival/voices
[ -e $FV/english/kal_diphone/festvox/kal_diphone.scm ] || need+=(festvox-kallpc16k)
[ -e $FV/english/ked_diphone/festvox/ked_diphone.scm ] || need+=(festvox-kdlpc16k)
[ -e $FV/us/cmu_us_slt_arctic_hts/festvox/cmu_us_slt_arctic_hts.scm ] || need+=(festvox-us-slt-hts)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)
# Real human speech (kws_okd.data.real_speech): alsa's and Asterisk's voices for the
# evaluation-only real dev set, klettres' letter recordings as unlabelled training audio.
[ -e /usr/share/sounds/alsa/Front_Left.wav ] || need+=(alsa-utils)
[ -e /usr/share/asterisk/sounds/en_US_f_Allison/digits/0.wav ] || need+=(asterisk-core-sounds-en-wav)
[ -e /usr/share/klettres/en/sounds.xml ] || need+=(klettres-data)
# A game's voice lines acted by people: the recording of people talking that reports count
# false alarms on (kws_okd/evaluate/voice_lines.py). About 145 MB to download, 20 MB of it voices.
[ -e /usr/share/games/hedgewars/Data/Sounds/voices/Default/Hello.ogg ] || need+=(hedgewars-data)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
