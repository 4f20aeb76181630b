# Multi-stage build: a static, pure-Go binary (modernc.org/sqlite needs no cgo) on an empty
# base, run as a non-root user.
#
#   docker build -t calaimfhir .
#   docker run -p 8080:8080 -v calaimfhir-data:/data calaimfhir
#
# No container engine runs on the machines this project is developed on, so this file is
# checked by review, not by a build here (see README).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/calaimfhir ./cmd/calaimfhir \
 && mkdir -p /out/data && chown 65532:65532 /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/calaimfhir /calaimfhir
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV CALAIMFHIR_ADDR=0.0.0.0:8080 CALAIMFHIR_DATA=/data
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/calaimfhir", "serve"]
