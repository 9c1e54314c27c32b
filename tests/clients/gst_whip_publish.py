"""Publish a test picture (VP8) and a tone (Opus) over WHIP from GStreamer's webrtcbin, max-bundle.

Run by the system's python3 (Debian's python3-gst-1.0 is not in the project's virtualenv), inside a
network namespace a test made: libnice ignores loopback interfaces. UPnP discovery is turned off, so
libnice sends nothing to the LAN. Nothing here is kelian's: plain webrtcbin and an HTTP POST, as a
classroom box built on GStreamer would do it.

    python3 gst_whip_publish.py URL TOKEN SECONDS

Prints "whip <status> <Location>" and the connection states; exits 0 when it published for SECONDS.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = (
    "webrtcbin name=send bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=240,framerate=15/1 "
    "! vp8enc deadline=1 keyframe-max-dist=15 ! rtpvp8pay "
    "! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! send. "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay "
    "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! send."
)


def main() -> None:
    url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    Gst.init(None)
    pipeline = Gst.parse_launch(PIPELINE)
    webrtc = pipeline.get_by_name("send")
    # Keep references: PyGObject releases the ICE agent it hands out one time too many otherwise.
    ice = webrtc.get_property("ice-agent")
    agent = ice.get_property("agent")
    agent.set_property("upnp", False)
    loop = GLib.MainLoop()
    result = {"code": 1, "offered": False}

    def post(offer: str) -> str | None:
        request = urllib.request.Request(
            url,
            data=offer.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                print("whip", response.status, response.headers.get("Location"), flush=True)
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            print("whip", exc.code, exc.read().decode().strip(), flush=True)
        except OSError as exc:
            print("whip failed:", exc, flush=True)
        loop.quit()
        return None

    def gathered(*_: object) -> None:
        done = webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE
        if not done or result["offered"]:
            return
        result["offered"] = True  # WHIP without trickle: the offer goes with all its candidates
        answer = post(webrtc.get_property("local-description").sdp.as_text())
        if answer is None:
            return
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        webrtc.emit("set-remote-description", description, None)

    def offer_created(promise: Gst.Promise, _: object) -> None:
        reply = promise.get_reply()  # held while the offer is used: the offer lives in it
        offer = reply.get_value("offer")
        if offer is not None:
            webrtc.emit("set-local-description", offer, None)

    def negotiate(_: object) -> None:
        if not result["offered"]:
            webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(offer_created, None))

    def state(*_: object) -> None:
        value = webrtc.get_property("connection-state")
        print("connection", value.value_nick, flush=True)
        if value == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            result["code"] = 0
        elif value == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            result["code"] = 1
            loop.quit()

    webrtc.connect("on-negotiation-needed", negotiate)
    webrtc.connect("notify::ice-gathering-state", gathered)
    webrtc.connect("notify::connection-state", state)
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    sys.stdout.flush()
    # Straight out: tearing down Python's wrappers of the ICE agent would unref it once too often.
    os._exit(int(result["code"]))


if __name__ == "__main__":
    main()
