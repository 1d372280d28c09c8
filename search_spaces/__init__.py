"""Named search-space presets (YAML) shipped with lcp-tune."""
