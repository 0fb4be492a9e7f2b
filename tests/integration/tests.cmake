# integration tests registered below
