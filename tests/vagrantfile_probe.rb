# Loads a Vagrantfile with plain Ruby, no Vagrant, and prints as JSON what it
# configures: per machine its box, hostname, networks, provisioners and, per
# provider, the provider settings and the networks of its override. This lets
# the tests look at the libvirt block on a host without vagrant-libvirt.
#
#   ruby vagrantfile_probe.rb VAGRANTFILE
# Environment: PROBE_PLUGINS, comma-separated plugins Vagrant.has_plugin? reports.
require "json"

# A provider's settings object: records every assignment.
class ProbeSettings
  attr_reader :values

  def initialize
    @values = {}
  end

  def method_missing(name, *args)
    return super unless name.to_s.end_with?("=") && args.size == 1

    @values[name.to_s.chomp("=")] = args.first
  end

  def respond_to_missing?(name, include_private = false)
    name.to_s.end_with?("=") || super
  end
end

class ProbeVM
  attr_accessor :box, :hostname

  def initialize
    @networks = []
    @provisioners = []
    @providers = {}
    @synced_folders = []
    @machines = {}
  end

  def define(name)
    machine = ProbeConfig.new
    yield machine
    @machines[name.to_s] = machine
  end

  def network(type, **options)
    @networks << { "type" => type.to_s, "options" => options }
  end

  def provision(type, **options)
    @provisioners << { "type" => type.to_s, "options" => options }
  end

  def synced_folder(source, destination, **options)
    @synced_folders << { "source" => source, "destination" => destination, "options" => options }
  end

  def provider(name)
    settings = ProbeSettings.new
    override = ProbeConfig.new
    yield settings, override
    @providers[name.to_s] = { "settings" => settings.values, "networks" => override.vm.to_h["networks"] }
  end

  def to_h
    {
      "box" => box, "hostname" => hostname, "networks" => @networks,
      "provisioners" => @provisioners, "providers" => @providers,
      "synced_folders" => @synced_folders,
      "machines" => @machines.transform_values { |machine| machine.vm.to_h }
    }
  end
end

class ProbeConfig
  def vm
    @vm ||= ProbeVM.new
  end
end

module Vagrant
  @config = nil

  class << self
    attr_reader :config

    def configure(version)
      raise ArgumentError, "config version #{version}" unless version.to_s == "2"

      @config = ProbeConfig.new
      yield @config
    end

    def has_plugin?(name, _version = nil)
      ENV.fetch("PROBE_PLUGINS", "").split(",").include?(name)
    end
  end
end

load File.expand_path(ARGV.fetch(0))
puts JSON.generate(Vagrant.config.vm.to_h)
