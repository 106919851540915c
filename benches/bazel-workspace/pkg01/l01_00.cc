#include "pkg01/l01_00.h"
#include "pkg00/l00_00.h"
#include <algorithm>
#include <numeric>

namespace l01_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 12) ^ (b + 9); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 9, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l00_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_00:" + std::to_string(score({seed, seed * 12, 9}));
}
}  // namespace l01_00
