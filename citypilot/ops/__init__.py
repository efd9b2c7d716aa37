"""Operations across silos: citizen service requests (311), later incidents and dispatch."""
