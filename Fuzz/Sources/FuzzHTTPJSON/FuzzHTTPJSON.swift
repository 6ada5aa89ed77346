import SkyWalkingProtocol

@testable import HTTPReceiver

/// The segment converter of `/v3/segment` and `/v3/segments`, internal to the HTTP receiver: a
/// debug build is built for testing, so `@testable import` reaches it.
private let segments = AgentJSONConverter(Skywalking_V3_SegmentObject.self)

/// Any bytes as an HTTP agent's body: split as a `/v3/segments` array, each element converted,
/// and converted whole as a `/v3/segment` body. Nothing may crash or loop; the split must hand
/// out as many elements as it counted, in order, inside the body; and the search for a refused
/// field must stay within its budget, whatever the element's shape.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let data, size > 0 else { return 0 }
  let body = UnsafeRawBufferPointer(start: data, count: size)
  if let elements = try? JSONStructure.arrayElements(body) {
    var handedOut = 0
    var previousEnd = 0
    for element in elements {
      precondition(element.lowerBound >= previousEnd && element.upperBound <= size)
      previousEnd = element.upperBound
      handedOut += 1
      convert(body, element)
    }
    precondition(handedOut == elements.count, "\(handedOut) elements of \(elements.count)")
  }
  convert(body, 0..<size)
  return 0
}

private func convert(_ body: UnsafeRawBufferPointer, _ element: Range<Int>) {
  guard (try? segments.convert(body, range: element)) == nil else { return }
  var search = segments.refusedFieldSearch(body)
  _ = search.field(in: element)
  let budget =
    RefusedFieldSearch.budgetPerElementByte * element.count + RefusedFieldSearch.budgetFloor
  precondition(search.decodedBytes <= budget, "decoded \(search.decodedBytes) of \(budget)")
}
