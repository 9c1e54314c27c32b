"""The lesson: rooms, participants, roles and grants, names, the rules of each room kind, errors.

No HTTP, WebSocket or SDP text here: signaling/ carries these rules over the wire, sfu/ moves the
media they decide on.
"""
