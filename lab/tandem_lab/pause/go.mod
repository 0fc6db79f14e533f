module tandem.dev/lab/pause

go 1.22
