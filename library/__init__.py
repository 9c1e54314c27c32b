"""The air-classroom library: recorded lessons and micro-lessons, catalogued, reviewed, played."""
