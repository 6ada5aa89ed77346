import FuzzDriver

runLibFuzzer { fuzzGRPCDeframer($0, $1) }
