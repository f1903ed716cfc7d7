package node

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/cascade-rtc/cascade/media"
)

// offeredSection is one audio or video media section of an SDP offer.
type offeredSection struct {
	mid       string
	kind      webrtc.RTPCodecType
	direction string // sendrecv, sendonly, recvonly or inactive
	codecs    []webrtc.RTPCodecCapability
}

// parseOffer parses an SDP offer into its audio and video sections, in
// order, with their codecs in the offerer's order of preference.
func parseOffer(offer string) ([]offeredSection, error) {
	if strings.TrimSpace(offer) == "" {
		return nil, fmt.Errorf("%w: empty offer", ErrBadOffer)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: malformed SDP: %v", ErrBadOffer, err)
	}
	var sections []offeredSection
	for _, md := range sd.MediaDescriptions {
		var kind webrtc.RTPCodecType
		switch md.MediaName.Media {
		case "audio":
			kind = webrtc.RTPCodecTypeAudio
		case "video":
			kind = webrtc.RTPCodecTypeVideo
		default:
			continue
		}
		sec := offeredSection{kind: kind, direction: "sendrecv"}
		rtpmap := map[string]webrtc.RTPCodecCapability{}
		fmtp := map[string]string{}
		for _, a := range md.Attributes {
			switch a.Key {
			case "mid":
				sec.mid = a.Value
			case "sendrecv", "sendonly", "recvonly", "inactive":
				sec.direction = a.Key
			case "rtpmap":
				pt, enc, ok := strings.Cut(a.Value, " ")
				if !ok {
					return nil, fmt.Errorf("%w: malformed SDP: bad rtpmap %q", ErrBadOffer, a.Value)
				}
				parts := strings.Split(enc, "/")
				c := webrtc.RTPCodecCapability{MimeType: kind.String() + "/" + parts[0]}
				if len(parts) > 1 {
					rate, err := strconv.ParseUint(parts[1], 10, 32)
					if err != nil {
						return nil, fmt.Errorf("%w: malformed SDP: bad clock rate in rtpmap %q", ErrBadOffer, a.Value)
					}
					c.ClockRate = uint32(rate)
				}
				if len(parts) > 2 {
					ch, err := strconv.ParseUint(parts[2], 10, 16)
					if err != nil {
						return nil, fmt.Errorf("%w: malformed SDP: bad channels in rtpmap %q", ErrBadOffer, a.Value)
					}
					c.Channels = uint16(ch)
				}
				rtpmap[pt] = c
			case "fmtp":
				pt, params, _ := strings.Cut(a.Value, " ")
				fmtp[pt] = params
			}
		}
		for _, pt := range md.MediaName.Formats {
			if c, ok := rtpmap[pt]; ok {
				c.SDPFmtpLine = fmtp[pt]
				sec.codecs = append(sec.codecs, c)
			}
		}
		sections = append(sections, sec)
	}
	return sections, nil
}

// sends reports whether the offerer sends media in the section.
func (s offeredSection) sends() bool { return s.direction == "sendrecv" || s.direction == "sendonly" }

// receives reports whether the offerer receives media in the section.
func (s offeredSection) receives() bool {
	return s.direction == "sendrecv" || s.direction == "recvonly"
}

// chooseCodec returns the first codec of the section, in the offerer's
// order, that Cascade supports, as Cascade registers it but with the
// offer's format parameters.
func (s offeredSection) chooseCodec() (ours webrtc.RTPCodecParameters, offered webrtc.RTPCodecCapability, ok bool) {
	for _, c := range s.codecs {
		for _, o := range media.Codecs() {
			if media.SameCodec(o.RTPCodecCapability, c) {
				c.MimeType = o.MimeType
				c.RTCPFeedback = o.RTCPFeedback
				return o, c, true
			}
		}
	}
	return ours, offered, false
}

// hasCodec reports whether the section offers a codec that can carry a
// source sending c.
func (s offeredSection) hasCodec(c webrtc.RTPCodecCapability) bool {
	for _, x := range s.codecs {
		if media.SameCodec(c, x) {
			return true
		}
	}
	return false
}

// mimeList names the section's codecs for error messages.
func (s offeredSection) mimeList() string {
	seen := map[string]bool{}
	var names []string
	for _, c := range s.codecs {
		name := strings.TrimPrefix(strings.TrimPrefix(c.MimeType, "audio/"), "video/")
		if !seen[strings.ToLower(name)] {
			seen[strings.ToLower(name)] = true
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
