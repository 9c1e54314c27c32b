"""The recorder: plain RTP from the server into a Matroska file per track (recorder.process)."""
