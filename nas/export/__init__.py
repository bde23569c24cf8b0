"""What leaves the search: an architecture as Model Garden configs (`modelgarden`) and the cost of a trial
(`cost`: seconds and memory of a proxy training, from its FLOPs)."""
