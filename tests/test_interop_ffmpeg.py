"""FFmpeg's own WHIP muxer (bundled in PyAV's wheels) publishing H.264 and Opus to kelian.

FFmpeg does its own ICE, DTLS and SRTP, so it meets kelian's answer and DTLS as any hardware
encoder would. It ignores keyframe requests: the late WHEP player here joins long after the one
keyframe of the run, and decodes at once from the picture group the server cached.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path

import av
import pytest
from clients.picture import shows_quadrants
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kelian_server import Server, eventually
from whep_player import play

PUBLISHER = Path(__file__).parent / "clients" / "ffmpeg_whip_publish.py"


def p256_certificate(folder: Path) -> tuple[Path, Path]:
    """What `openssl ecparam -name prime256v1` and `openssl req -x509` make (see the README)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "encoder")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "whip.crt", folder / "whip.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_the_bundled_ffmpeg_has_a_whip_muxer() -> None:
    assert "whip" in av.formats_available


@pytest.mark.slow
async def test_ffmpeg_publishes_h264_and_opus_and_a_late_player_sees_it_at_once(
    kelian: Server, tmp_path: Path
) -> None:
    cert, key = p256_certificate(tmp_path)
    token = kelian.token("encoder", "lecturer")
    # one keyframe in the whole run: a 300-frame picture group is 12 s at 25 fps
    encoder = await asyncio.create_subprocess_exec(
        *(
            sys.executable,
            str(PUBLISHER),
            f"{kelian.url}/whip/lesson",
            token,
            str(cert),
            str(key),
            "9",
            "300",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        room = kelian.rooms.get("lesson")  # type: ignore[attr-defined]

        def video() -> object:
            return next((p for p in room.router.producers.values() if p.kind == "video"), None)

        assert await eventually(lambda: len(room.router.producers) == 2, timeout=15)
        assert sorted((p.kind, p.codec.name) for p in room.router.producers.values()) == [
            ("audio", "opus"),
            ("video", "H264"),
        ]
        stream = video().streams[0]  # type: ignore[attr-defined]
        assert await eventually(lambda: stream.stats.packets > 60, timeout=10), "two seconds in"
        player = await play(f"{kelian.url}/whep/lesson", kelian.token("viewer", "viewer"))
        try:
            frames = await player.frames("video", 10)
            assert {(f.width, f.height) for f in frames} == {(320, 240)}  # type: ignore[attr-defined]
            assert shows_quadrants(frames[-1].to_ndarray(format="rgb24")), "the encoder's picture"  # type: ignore[attr-defined]
            (consumer,) = [c for c in stream.consumers if c.kind == "video"]
            assert consumer.replayed is not None, "started from the cached picture group, not a keyframe"
            sounds = await player.frames("audio", 10)
            assert all(s.sample_rate == 48000 for s in sounds)  # type: ignore[attr-defined]
        finally:
            await player.close()
    finally:
        out, err = await encoder.communicate()
    assert encoder.returncode == 0, err.decode(errors="replace")[-2000:]
    assert out.startswith(b"published"), err.decode(errors="replace")[-2000:]
