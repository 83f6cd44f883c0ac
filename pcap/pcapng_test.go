package pcap

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/podlab/podlab/internal/e2e"
)

// mergedPackets is a two-interface run with comments, as reports write it.
func mergedPackets(t testing.TB) []Packet {
	pk := handshake(t)
	syn := tcpFrame(t, "10.244.1.5", 43122, "10.244.2.7", 8080, "S", "")
	lxc := []Packet{
		{Time: t0.Add(500 * time.Microsecond), Data: syn, Direction: DirectionInbound, Reception: ReceptionUnicast, InterfaceName: "kind-worker/lxc3f2a", Comment: "to-overlay"},
		{Time: t0.Add(2500 * time.Microsecond), Data: syn, Direction: DirectionInbound, InterfaceName: "kind-worker/lxc3f2a", Comment: "DROPPED: Policy denied, kind-worker lxc3f2a egress"},
	}
	all := append(pk, lxc...)
	SortByTime(all)
	return all
}

func TestPcapngRoundTrip(t *testing.T) {
	in := mergedPackets(t)
	// A raw-IP interface and an odd timestamp too.
	raw := tcpFrame(t, "10.0.0.1", 1, "10.0.0.2", 2, "S", "")[14:]
	in = append(in, Packet{Time: time.Unix(1, 1), Data: raw, LinkType: LinkTypeRaw, InterfaceName: "tun0", Direction: DirectionOutbound})
	stats := map[string]InterfaceStats{"kind-worker/eth0": {Start: t0, End: t0.Add(time.Second), Received: 9, Dropped: 1, Delivered: 8}}
	var buf bytes.Buffer
	ifaces := []Interface{{Name: "kind-worker/eth0", Description: "eth0 in netns podlab-x-kind-worker"}}
	if err := Write(&buf, ifaces, in, stats); err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, ifc := range f.Interfaces {
		names = append(names, ifc.Name)
	}
	if got := strings.Join(names, ","); got != "kind-worker/eth0,kind-worker/lxc3f2a,tun0" {
		t.Errorf("interfaces %s", got)
	}
	if f.Interfaces[0].Description != ifaces[0].Description || f.Interfaces[2].LinkType != LinkTypeRaw || f.Interfaces[0].SnapLen != DefaultSnapLen {
		t.Errorf("interface fields lost: %+v", f.Interfaces)
	}
	if len(f.Packets) != len(in) {
		t.Fatalf("read %d packets, wrote %d", len(f.Packets), len(in))
	}
	for i := range in {
		a, b := in[i], f.Packets[i]
		if !a.Time.Equal(b.Time) || !bytes.Equal(a.Data, b.Data) || a.Direction != b.Direction || a.Reception != b.Reception ||
			a.InterfaceName != b.InterfaceName || a.Comment != b.Comment || b.OrigLen != len(a.Data) || a.LinkType.orEthernet() != b.LinkType {
			t.Errorf("packet %d differs:\nwrote %+v\n read %+v", i, a, b)
		}
	}
	if got, want := f.Stats["kind-worker/eth0"], stats["kind-worker/eth0"]; !got.Start.Equal(want.Start) || !got.End.Equal(want.End) ||
		got.Received != want.Received || got.Dropped != want.Dropped || got.Delivered != want.Delivered {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	// The same file through the per-interface view.
	rec := f.Source("kind-worker/lxc3f2a")
	if len(rec.Packets()) != 2 || rec.FrameNumber(0) != 2 || rec.FrameNumber(1) != 5 {
		t.Errorf("source view: %d packets, frames %d %d", len(rec.Packets()), rec.FrameNumber(0), rec.FrameNumber(1))
	}
}

// TestPcapngReadByGopacket checks our files against an independent reader.
func TestPcapngReadByGopacket(t *testing.T) {
	in := mergedPackets(t)
	var buf bytes.Buffer
	if err := Write(&buf, nil, in, nil); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !ci.Timestamp.Equal(in[i].Time) || !bytes.Equal(data, in[i].Data) {
			t.Errorf("packet %d: time %v data %d bytes, want %v %d", i, ci.Timestamp, len(data), in[i].Time, len(in[i].Data))
		}
		if in[i].Comment != "" && (len(opts.Comments) != 1 || opts.Comments[0] != in[i].Comment) {
			t.Errorf("packet %d: comments %q", i, opts.Comments)
		}
		ifc, err := r.Interface(ci.InterfaceIndex)
		if err != nil || ifc.Name != in[i].InterfaceName {
			t.Errorf("packet %d: interface %q (%v), want %q", i, ifc.Name, err, in[i].InterfaceName)
		}
	}
}

// TestPcapngReadForeign reads a big-endian, microsecond file with a simple
// packet block, as other tools may write.
func TestPcapngReadForeign(t *testing.T) {
	be := binary.BigEndian
	var b []byte
	block := func(typ uint32, body []byte) {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		n := uint32(12 + len(body))
		b = be.AppendUint32(b, typ)
		b = be.AppendUint32(b, n)
		b = append(b, body...)
		b = be.AppendUint32(b, n)
	}
	block(blockSHB, be.AppendUint64(be.AppendUint32(be.AppendUint32(nil, byteOrderMagic), 1<<16), ^uint64(0)))
	block(blockIDB, be.AppendUint32(be.AppendUint32(nil, 1<<16), 0)) // Ethernet, no options
	frame := udpFrame(t, "1.1.1.1", 1, "2.2.2.2", 2, []byte("x"))
	ts := uint64(1_700_000_000_123_456) // microseconds
	epb := be.AppendUint32(nil, 0)
	epb = be.AppendUint32(epb, uint32(ts>>32))
	epb = be.AppendUint32(epb, uint32(ts))
	epb = be.AppendUint32(epb, uint32(len(frame)))
	epb = be.AppendUint32(epb, uint32(len(frame)))
	epb = append(epb, frame...)
	block(blockEPB, epb)
	block(blockSPB, append(be.AppendUint32(nil, uint32(len(frame))), frame...))
	block(0x0BAD, []byte{1, 2, 3, 4}) // unknown: skipped
	f, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Packets) != 2 || !f.Packets[0].Time.Equal(time.UnixMicro(int64(ts))) || !bytes.Equal(f.Packets[1].Data, frame) {
		t.Fatalf("read %+v", f.Packets)
	}
}

func TestPcapngReadErrors(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, nil, handshake(t), nil); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for name, data := range map[string][]byte{
		"empty":      nil,
		"not pcapng": []byte("this is not a capture file at all"),
		"truncated":  good[:len(good)-7],
	} {
		if _, err := Read(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.pcapng")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestTsUnit(t *testing.T) {
	for _, tc := range []struct {
		res      byte
		raw      uint64
		wantNano int64
	}{
		{6, 1_500_000, 1_500_000_000},
		{9, 42, 42},
		{3, 2, 2_000_000},
		{0x80 | 10, 1024 + 512, 1_500_000_000}, // 2^-10 s
		{12, 1_000_000_000_123_000, 1_000_000_000_123},
	} {
		mul, div := tsUnit(tc.res)
		ifc := readIface{mul: mul, div: div}
		if got := ifc.time(tc.raw).UnixNano(); got != tc.wantNano {
			t.Errorf("tsresol %#x raw %d: %d ns, want %d", tc.res, tc.raw, got, tc.wantNano)
		}
	}
}

// haveTshark reports whether tshark is installed; with PODLAB_E2E=1 its
// absence fails the test (see internal/e2e).
func haveTshark(t *testing.T) bool {
	t.Helper()
	return e2e.Have(t, e2e.Tool("tshark"))
}

// tsharkRead runs tshark on path and fails the test on any warning. It
// stops the test when tshark is not installed (see internal/e2e).
func tsharkRead(t *testing.T, path string, args ...string) string {
	t.Helper()
	e2e.Require(t, e2e.Tool("tshark"))
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, append([]string{"-n", "-r", path}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark -r %s %v: %v\n%s%s", path, args, err, stderr.String(), stdout.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		// tshark's own complaint about running as root is not about the file.
		if line == "" || strings.HasPrefix(line, "Running as user \"root\"") {
			continue
		}
		t.Errorf("tshark -r %s: %s", path, line)
	}
	return stdout.String()
}

func TestPcapngTshark(t *testing.T) {
	dir := t.TempDir()
	merged := filepath.Join(dir, "capture.pcapng")
	in := mergedPackets(t)
	stats := map[string]InterfaceStats{"kind-worker/eth0": {Start: t0, End: t0.Add(time.Second), Received: 8, Delivered: 8}}
	if err := WriteFile(merged, nil, in, stats); err != nil {
		t.Fatal(err)
	}
	out := tsharkRead(t, merged)
	if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != len(in) {
		t.Errorf("tshark shows %d packets, want %d:\n%s", n, len(in), out)
	}
	comments := tsharkRead(t, merged, "-Y", "frame.comment", "-T", "fields", "-e", "frame.number", "-e", "frame.comment")
	want := "2\tto-overlay\n5\tDROPPED: Policy denied, kind-worker lxc3f2a egress\n"
	if comments != want {
		t.Errorf("tshark comments:\n%s\nwant:\n%s", comments, want)
	}
	fields := tsharkRead(t, merged, "-d", "udp.port==8472,vxlan", "-T", "fields", "-e", "frame.interface_name", "-e", "frame.time_epoch", "-e", "vxlan.vni", "-e", "frame.p2p_dir")
	lines := strings.Split(strings.TrimSpace(fields), "\n")
	if !strings.HasPrefix(lines[0], "kind-worker/eth0\t1795262400.123456789\t") {
		t.Errorf("first packet fields %q: want interface name and ns timestamp", lines[0])
	}
	if !strings.Contains(lines[2], "\t260") {
		t.Errorf("VXLAN packet fields %q: want vni 260", lines[2])
	}
	if got := tsharkRead(t, merged, "-Y", "frame.interface_name == \"kind-worker/lxc3f2a\"", "-T", "fields", "-e", "frame.number"); got != "2\n5\n" {
		t.Errorf("lxc frames %q", got)
	}
	// Direction flags as tshark decodes them.
	if got := tsharkRead(t, merged, "-Y", "frame.packet_flags_direction == 0x1", "-T", "fields", "-e", "frame.number"); got != "2\n4\n5\n9\n" {
		t.Errorf("inbound frames %q, want 2 4 5 9", got)
	}
}
