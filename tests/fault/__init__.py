"""The fault suite: the agent against a misbehaving stand-in, kills, full disks, clock jumps."""
