"""Pairing policies (who meets whom each round) and interpersonal matching (task=match).

policies: random, round robin, the fair sit-out rule; preference: homophily, heterophily, graph;
compatibility: predicted compatibility (trained scorer or embeddings); bandit: UCB/Thompson over
pairs; assignment: the disjoint max-weight pairs; dispatch/match_task: supporters for a seeker."""
