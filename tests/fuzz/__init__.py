"""Bad-input tests: generated protobuf messages, bytes, tokens, topic names and EnSQL."""
