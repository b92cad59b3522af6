"""What the tests share (no tests here): loopback ports, the fake clock, test beds, fleets, Temporal helpers."""
