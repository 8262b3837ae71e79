"""The LLaMA transformer over the unified text + video token sequence."""
