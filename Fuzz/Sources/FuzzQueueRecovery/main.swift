import FuzzDriver

runLibFuzzer { fuzzQueueRecovery($0, $1) }
