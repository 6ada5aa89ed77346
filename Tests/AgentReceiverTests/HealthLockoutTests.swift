import NIOCore
import NIOHTTP2
import Testing

@testable import AgentReceiver

/// The rules that keep clients without the token, which may call `grpc.health.v1.Health`
/// freely, from holding the connections agents need: on values, with a manual clock.
@Suite(.timeLimit(.minutes(1))) struct HealthLockoutTests {
  /// A client opening Watch after Watch on one connection: two are served, the third refused,
  /// and a slot freed is a slot again.
  @Test func aConnectionHoldsAtMostTwoHealthStreams() {
    var standing = ConnectionStanding()
    #expect(standing.callStarted(.health) == .none)
    #expect(standing.callStarted(.health) == .none)
    #expect(standing.callStarted(.health) == .refuseHealthStream)
    standing.healthStreamEnded()
    #expect(standing.callStarted(.health) == .none)
    #expect(standing.openHealthStreams == 2)
  }

  /// The Java agent's first calls publish (properties, keepAlive); the Go agent's first may be a
  /// forwarded `fetchConfigurations` without the token. Either keeps the connection past the
  /// grace period; only publishing vouches for it, once.
  @Test func agentCallsKeepTheConnectionAndOnlyPublishingVouchesForIt() {
    var goAgent = ConnectionStanding()
    #expect(goAgent.callStarted(.forwarded) == .none)
    #expect(goAgent.graceEnded() == .none)
    #expect(goAgent.callStarted(.publishing) == .vouch)
    #expect(goAgent.callStarted(.publishing) == .none)

    var watcher = ConnectionStanding()
    _ = watcher.callStarted(.health)
    #expect(watcher.graceEnded() == .close)
    #expect(ConnectionStanding().graceEnded() == .close, "a silent connection")
  }

  static func watching() -> GRPCStreamStateMachine {
    var machine = GRPCStreamStateMachine(maxPendingBytes: 8)
    _ = machine.receivedHeaders(.health(watch: true))
    _ = machine.clientFinished(
      at: NIODeadline.uptimeNanoseconds(0), tornMessageBytes: 0, readiness: .serving)
    return machine
  }

  /// A Watch lives 30 minutes, ticking every second with changes only, then ends OK after the
  /// last status it sent, without a reset (its client finished its side long ago).
  @Test func aWatchEndsOKAfterItsMaximumLifetime() {
    var machine = Self.watching()
    let start = NIODeadline.uptimeNanoseconds(0)
    let lifetime = ReceiverShared.maxWatchLifetime
    #expect(lifetime == .minutes(30))
    #expect(machine.watchTimerFired(.serving, at: start + lifetime - .seconds(1)).isNone)
    guard case .write(let change) = machine.watchTimerFired(.notServing, at: start + .minutes(1))
    else {
      Issue.record("a change within the lifetime is sent")
      return
    }
    #expect(change.count == 1)
    guard
      case .answer(let response, let reset, _, _) = machine.watchTimerFired(
        .notServing, at: start + lifetime)
    else {
      Issue.record("the Watch outlived its maximum lifetime")
      return
    }
    #expect(response.status == .ok)
    #expect(!reset)
    #expect(response.frames.count == 1, "trailers only: the last status was sent already")
    #expect(machine.isAnswered)
  }

  /// A Check stream never ends by the Watch's timer.
  @Test func theWatchLifetimeLeavesOtherCallsAlone() {
    var machine = GRPCStreamStateMachine(maxPendingBytes: 8)
    _ = machine.receivedHeaders(.health(watch: false))
    #expect(machine.watchTimerFired(.serving, at: .uptimeNanoseconds(0) + .hours(1)).isNone)
    #expect(!machine.isAnswered)
  }
}
