package pcap

import (
	"bytes"
	"testing"
)

// FuzzRead checks that no file content makes the reader panic.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, nil, mergedPackets(f), map[string]InterfaceStats{"kind-worker/eth0": {Received: 1}}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Read(bytes.NewReader(data))
		if err == nil {
			for i := range file.Packets {
				_ = Summary(&file.Packets[i])
			}
		}
	})
}

// FuzzDecode checks that no packet makes decoding, summaries or matching
// panic.
func FuzzDecode(f *testing.F) {
	for _, p := range handshake(f) {
		f.Add(p.Data)
	}
	filters := []*Filter{
		MustCompile(synM, labResolver),
		MustCompile(Match{DNS: &DNSMatch{QName: "*.local", RCode: "NXDOMAIN"}}, nil),
		MustCompile(Match{ICMP: &ICMPMatch{Type: "echo-reply"}, Payload: "x"}, nil),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := Packet{Data: data}
		fr := DecodePacket(&p)
		_ = fr.Summary()
		for _, flt := range filters {
			flt.MatchFrame(fr, &p)
			flt.Explain(fr, &p)
		}
		raw := Decode(data, LinkTypeRaw)
		_ = raw.Summary()
	})
}
