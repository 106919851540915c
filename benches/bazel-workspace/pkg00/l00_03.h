#ifndef PKG00_L00_03_H
#define PKG00_L00_03_H
#include <string>
#include <vector>

namespace l00_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_03

#endif
