"""How tests/data/voice.amr was made, once (it is shipped; the tests never run this).

A real AMR-NB file, as WeChat keeps a voice message: espeak-ng says a short question in
Mandarin, ffmpeg turns it into 8 kHz mono 16-bit samples, and the opencore AMR-NB encoder
(Debian's libopencore-amrnb0, through ctypes) codes each 20 ms of it at 12.2 kbit/s (mode 7:
32 bytes a frame with its header byte) after the "#!AMR\\n" magic (RFC 4867, section 5).

    apt-get install -y espeak-ng ffmpeg libopencore-amrnb0
    python tests/data/make_voice_amr.py
"""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAID = "我想问一下，什么时候开庭"
MR122 = 7  # AMR-NB's 12.2 kbit/s mode
SAMPLES = 160  # 20 ms at 8 kHz


def pcm(text: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "said.wav"
        subprocess.run(["espeak-ng", "-v", "cmn", "-s", "160", text, "-w", str(wav)], check=True)
        return subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", str(wav), "-ar", "8000", "-ac", "1"]
            + ["-f", "s16le", "-"],
            check=True,
            capture_output=True,
        ).stdout


def encode(samples: bytes) -> bytes:
    lib = ctypes.CDLL("libopencore-amrnb.so.0")
    lib.Encoder_Interface_init.restype = ctypes.c_void_p
    lib.Encoder_Interface_Encode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    lib.Encoder_Interface_exit.argtypes = [ctypes.c_void_p]
    state = lib.Encoder_Interface_init(0)
    out = bytearray(b"#!AMR\n")
    frame = SAMPLES * 2
    samples += b"\0" * (-len(samples) % frame)
    buf = ctypes.create_string_buffer(64)
    for i in range(0, len(samples), frame):
        n = lib.Encoder_Interface_Encode(state, MR122, samples[i : i + frame], buf, 0)
        out += buf.raw[:n]
    lib.Encoder_Interface_exit(state)
    return bytes(out)


if __name__ == "__main__":
    (HERE / "voice.amr").write_bytes(encode(pcm(SAID)))
