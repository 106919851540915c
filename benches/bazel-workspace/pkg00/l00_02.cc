#include "pkg00/l00_02.h"
#include "pkg00/l00_01.h"
#include <algorithm>
#include <numeric>

namespace l00_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 5) ^ (b + 2); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 2, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l00_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_02:" + std::to_string(score({seed, seed * 5, 2}));
}
}  // namespace l00_02
