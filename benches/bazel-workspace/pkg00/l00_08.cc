#include "pkg00/l00_08.h"
#include "pkg00/l00_07.h"
#include <algorithm>
#include <numeric>

namespace l00_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 11) ^ (b + 8); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 8, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l00_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_08:" + std::to_string(score({seed, seed * 11, 8}));
}
}  // namespace l00_08
