"""Who proposes architectures: an RNN policy trained with PPO, regularized evolution, random search."""
