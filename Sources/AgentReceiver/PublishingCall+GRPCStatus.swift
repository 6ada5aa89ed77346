import AgentIngest
import DurableQueue
import GRPCCore

extension PublishingCall {
  /// The outcome in gRPC's words: OK, INVALID_ARGUMENT naming what was refused, or the queue's
  /// failure as RESOURCE_EXHAUSTED (back off) or UNAVAILABLE (retry elsewhere).
  package var status: GRPCStatus {
    switch outcome {
    case .accepted: .ok
    case .refused(let message): GRPCStatus(code: .invalidArgument, message: message)
    case .queueFailed(let code, let message): GRPCStatus(code: code.grpcCode, message: message)
    }
  }
}

extension QueueErrorCode {
  /// What an agent should do: a full queue is temporary pressure; anything else is an outage.
  var grpcCode: GRPCStatus.Code { isBackPressure ? .resourceExhausted : .unavailable }
}
